"""Tasks (REST v2): UPPER_CASE names in requests and storage, camelCase in responses."""

from __future__ import annotations

from b24emu.schema import f, fields

RO = {"read_only": True}

# Declared in the order ``tasks.task.get`` renders them (doc samples of tasks.task.add/update).
TASK = fields(
    f("ID", "integer", "ID", **RO),
    f("PARENT_ID", "integer", "Базовая задача"),
    f("TITLE", "string", "Название", required=True),
    f("DESCRIPTION", "string", "Описание"),
    f("MARK", "enum", "Оценка"),
    f("PRIORITY", "enum", "Приоритет"),
    f("MULTITASK", "enum", "Множественная задача"),
    f("NOT_VIEWED", "enum", "Не просмотрена"),
    f("REPLICATE", "enum", "Повторяемая"),
    f("STAGE_ID", "integer", "Стадия"),
    f("CREATED_BY", "user", "Постановщик", required=True),
    f("CREATED_DATE", "datetime", "Дата создания", **RO),
    f("RESPONSIBLE_ID", "user", "Исполнитель", required=True),
    f("CHANGED_BY", "user", "Изменил", **RO),
    f("CHANGED_DATE", "datetime", "Дата изменения", **RO),
    f("STATUS_CHANGED_BY", "user", "Сменил статус", **RO),
    f("CLOSED_BY", "user", "Закрыл", **RO),
    f("CLOSED_DATE", "datetime", "Дата закрытия", **RO),
    f("ACTIVITY_DATE", "datetime", "Дата последней активности", **RO),
    f("DATE_START", "datetime", "Дата начала", **RO),
    f("DEADLINE", "datetime", "Крайний срок"),
    f("START_DATE_PLAN", "datetime", "Плановое начало"),
    f("END_DATE_PLAN", "datetime", "Плановое завершение"),
    f("GUID", "string", "GUID", **RO),
    f("XML_ID", "string", "Внешний код"),
    f("COMMENTS_COUNT", "integer", "Число комментариев", **RO),
    f("SERVICE_COMMENTS_COUNT", "integer", "Число служебных комментариев", **RO),
    f("ALLOW_CHANGE_DEADLINE", "enum", "Разрешить менять сроки"),
    f("ALLOW_TIME_TRACKING", "enum", "Учёт времени"),
    f("TASK_CONTROL", "enum", "Принять работу после завершения"),
    f("ADD_IN_REPORT", "enum", "Добавить в отчёт"),
    f("FORKED_BY_TEMPLATE_ID", "integer", "Создана по шаблону", **RO),
    f("TIME_ESTIMATE", "integer", "Затраты плановые"),
    f("TIME_SPENT_IN_LOGS", "integer", "Затраты фактические", **RO),
    f("MATCH_WORK_TIME", "enum", "Пропускать выходные"),
    f("FORUM_TOPIC_ID", "integer", "Тема форума", **RO),
    f("FORUM_ID", "integer", "Форум", **RO),
    f("SITE_ID", "string", "Сайт"),
    f("SUBORDINATE", "enum", "Задача подчинённого", **RO),
    f("EXCHANGE_MODIFIED", "datetime", "Изменена синхронизацией", **RO),
    f("EXCHANGE_ID", "integer", "Идентификатор синхронизации", **RO),
    f("OUTLOOK_VERSION", "integer", "Версия", **RO),
    f("VIEWED_DATE", "datetime", "Дата просмотра", **RO),
    f("SORTING", "double", "Индекс сортировки", **RO),
    f("DURATION_FACT", "integer", "Фактическая длительность", **RO),
    f("IS_MUTED", "enum", "Без звука", **RO),
    f("IS_PINNED", "enum", "Закреплена", **RO),
    f("IS_PINNED_IN_GROUP", "enum", "Закреплена в группе", **RO),
    f("FLOW_ID", "integer", "Поток"),
    f("DESCRIPTION_IN_BBCODE", "enum", "Описание в BB-кодах", **RO),
    f("STATUS", "enum", "Статус", **RO),
    f("REAL_STATUS", "enum", "Статус"),
    f("STATUS_CHANGED_DATE", "datetime", "Дата смены статуса", **RO),
    f("DURATION_PLAN", "integer", "Планируемая длительность"),
    f("DURATION_TYPE", "enum", "Тип единицы длительности"),
    f("FAVORITE", "enum", "Избранное", **RO),
    f("GROUP_ID", "group", "Проект"),
    f("AUDITORS", "user", "Наблюдатели", multiple=True),
    f("ACCOMPLICES", "user", "Соисполнители", multiple=True),
    f("NEW_COMMENTS_COUNT", "integer", "Число новых комментариев", **RO),
    f("CHAT_ID", "integer", "Чат задачи", **RO),
    f("TAGS", "string", "Теги", multiple=True),
    f("UF_CRM_TASK", "crm", "Элементы CRM", multiple=True, dynamic=True),
)

# Status codes (REAL_STATUS): 1 new (legacy), 2 pending, 3 in progress, 4 awaiting control,
# 5 completed, 6 deferred.
STATUS_NEW, STATUS_PENDING, STATUS_IN_PROGRESS, STATUS_SUPPOSEDLY_COMPLETED = 1, 2, 3, 4
STATUS_COMPLETED, STATUS_DEFERRED = 5, 6

# Meta statuses of the ``STATUS`` filter and of ``subStatus``.
META_OVERDUE, META_UNVIEWED, META_ALMOST_OVERDUE = -1, -2, -3
