"""CRM entities: deals, companies, contacts, activities (legacy UPPER_CASE names)."""

from __future__ import annotations

from b24emu.schema import f, fields
from b24emu.store import FieldDef

RO = {"read_only": True}

DEAL = fields(
    f("ID", "integer", "ID", **RO),
    f("TITLE", "string", "Название"),
    f("TYPE_ID", "crm_status", "Тип", status_type="DEAL_TYPE"),
    f("CATEGORY_ID", "crm_category", "Воронка", immutable=True),
    f("STAGE_ID", "crm_status", "Стадия сделки", status_type="DEAL_STAGE"),
    f("STAGE_SEMANTIC_ID", "string", "Группа стадии", **RO),
    f("IS_NEW", "char", "Новая сделка", **RO),
    f("IS_RECURRING", "char", "Регулярная сделка"),
    f("IS_RETURN_CUSTOMER", "char", "Повторная сделка"),
    f("IS_REPEATED_APPROACH", "char", "Повторное обращение"),
    f("PROBABILITY", "integer", "Вероятность"),
    f("CURRENCY_ID", "crm_currency", "Валюта"),
    f("OPPORTUNITY", "double", "Сумма"),
    f("IS_MANUAL_OPPORTUNITY", "char", "Сумма заполняется вручную"),
    f("TAX_VALUE", "double", "Ставка налога"),
    f("COMPANY_ID", "crm_company", "Компания"),
    f("CONTACT_ID", "crm_contact", "Контакт"),
    f("CONTACT_IDS", "crm_contact", "Контакты", multiple=True),
    f("QUOTE_ID", "crm_quote", "Предложение", **RO),
    f("BEGINDATE", "date", "Дата начала"),
    f("CLOSEDATE", "date", "Дата завершения"),
    f("OPENED", "char", "Доступна для всех"),
    f("CLOSED", "char", "Закрыта"),
    f("COMMENTS", "string", "Комментарий"),
    f("ASSIGNED_BY_ID", "user", "Ответственный"),
    f("CREATED_BY_ID", "user", "Кем создана", **RO),
    f("MODIFY_BY_ID", "user", "Кем изменена", **RO),
    f("MOVED_BY_ID", "user", "Кем перемещена", **RO),
    f("DATE_CREATE", "datetime", "Дата создания", **RO),
    f("DATE_MODIFY", "datetime", "Дата изменения", **RO),
    f("MOVED_TIME", "datetime", "Дата перемещения", **RO),
    f("SOURCE_ID", "crm_status", "Источник", status_type="SOURCE"),
    f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
    f("LEAD_ID", "crm_lead", "Лид", **RO),
    f("ADDITIONAL_INFO", "string", "Дополнительная информация"),
    f("LOCATION_ID", "location", "Местоположение"),
    f("ORIGINATOR_ID", "string", "Внешний источник"),
    f("ORIGIN_ID", "string", "Идентификатор элемента во внешнем источнике"),
    f("UTM_SOURCE", "string", "Рекламная система"),
    f("UTM_MEDIUM", "string", "Тип трафика"),
    f("UTM_CAMPAIGN", "string", "Обозначение рекламной кампании"),
    f("UTM_CONTENT", "string", "Содержание кампании"),
    f("UTM_TERM", "string", "Условие поиска кампании"),
    f("LAST_ACTIVITY_TIME", "datetime", "Последняя активность", **RO),
    f("LAST_ACTIVITY_BY", "user", "Автор последней активности", **RO),
)

COMPANY = fields(
    f("ID", "integer", "ID", **RO),
    f("TITLE", "string", "Название компании", required=True),
    f("COMPANY_TYPE", "crm_status", "Тип компании", status_type="COMPANY_TYPE"),
    f("LOGO", "file", "Логотип"),
    f("ADDRESS", "string", "Адрес"),
    f("ADDRESS_CITY", "string", "Город"),
    f("ADDRESS_REGION", "string", "Регион"),
    f("ADDRESS_PROVINCE", "string", "Область"),
    f("ADDRESS_COUNTRY", "string", "Страна"),
    f("INDUSTRY", "crm_status", "Сфера деятельности", status_type="INDUSTRY"),
    f("EMPLOYEES", "crm_status", "Кол-во сотрудников", status_type="EMPLOYEES"),
    f("CURRENCY_ID", "crm_currency", "Валюта"),
    f("REVENUE", "double", "Годовой оборот"),
    f("OPENED", "char", "Доступна для всех"),
    f("COMMENTS", "string", "Комментарий"),
    f("HAS_PHONE", "char", "Есть телефон", **RO),
    f("HAS_EMAIL", "char", "Есть e-mail", **RO),
    f("IS_MY_COMPANY", "char", "Моя компания"),
    f("ASSIGNED_BY_ID", "user", "Ответственный"),
    f("CREATED_BY_ID", "user", "Кем создана", **RO),
    f("MODIFY_BY_ID", "user", "Кем изменена", **RO),
    f("DATE_CREATE", "datetime", "Дата создания", **RO),
    f("DATE_MODIFY", "datetime", "Дата изменения", **RO),
    f("LEAD_ID", "crm_lead", "Лид", **RO),
    f("ORIGINATOR_ID", "string", "Внешний источник"),
    f("ORIGIN_ID", "string", "Идентификатор элемента во внешнем источнике"),
    f("PHONE", "crm_multifield", "Телефон", multiple=True),
    f("EMAIL", "crm_multifield", "E-mail", multiple=True),
    f("WEB", "crm_multifield", "Сайт", multiple=True),
    f("LAST_ACTIVITY_TIME", "datetime", "Последняя активность", **RO),
    f("LAST_ACTIVITY_BY", "user", "Автор последней активности", **RO),
)

CONTACT = fields(
    f("ID", "integer", "ID", **RO),
    f("HONORIFIC", "crm_status", "Обращение", status_type="HONORIFIC"),
    f("NAME", "string", "Имя"),
    f("SECOND_NAME", "string", "Отчество"),
    f("LAST_NAME", "string", "Фамилия"),
    f("PHOTO", "file", "Фотография"),
    f("BIRTHDATE", "date", "Дата рождения"),
    f("TYPE_ID", "crm_status", "Тип контакта", status_type="CONTACT_TYPE"),
    f("SOURCE_ID", "crm_status", "Источник", status_type="SOURCE"),
    f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
    f("POST", "string", "Должность"),
    f("COMMENTS", "string", "Комментарий"),
    f("OPENED", "char", "Доступен для всех"),
    f("EXPORT", "char", "Участвует в экспорте контактов"),
    f("HAS_PHONE", "char", "Есть телефон", **RO),
    f("HAS_EMAIL", "char", "Есть e-mail", **RO),
    f("ASSIGNED_BY_ID", "user", "Ответственный"),
    f("CREATED_BY_ID", "user", "Кем создан", **RO),
    f("MODIFY_BY_ID", "user", "Кем изменен", **RO),
    f("DATE_CREATE", "datetime", "Дата создания", **RO),
    f("DATE_MODIFY", "datetime", "Дата изменения", **RO),
    f("COMPANY_ID", "crm_company", "Компания"),
    f("COMPANY_IDS", "crm_company", "Компании", multiple=True),
    f("LEAD_ID", "crm_lead", "Лид", **RO),
    f("ORIGINATOR_ID", "string", "Внешний источник"),
    f("ORIGIN_ID", "string", "Идентификатор элемента во внешнем источнике"),
    f("PHONE", "crm_multifield", "Телефон", multiple=True),
    f("EMAIL", "crm_multifield", "E-mail", multiple=True),
    f("LAST_ACTIVITY_TIME", "datetime", "Последняя активность", **RO),
    f("LAST_ACTIVITY_BY", "user", "Автор последней активности", **RO),
)

ACTIVITY = fields(
    f("ID", "integer", "ID", **RO),
    f("OWNER_ID", "integer", "ID владельца", required=True, immutable=True),
    f("OWNER_TYPE_ID", "crm_enum_ownertype", "Тип владельца", required=True, immutable=True),
    f("TYPE_ID", "crm_enum_activitytype", "Тип", required=True, immutable=True),
    f("PROVIDER_ID", "string", "Провайдер"),
    f("PROVIDER_TYPE_ID", "string", "Тип провайдера"),
    f("PROVIDER_GROUP_ID", "string", "Группа провайдера"),
    f("ASSOCIATED_ENTITY_ID", "integer", "Связанная сущность"),
    f("SUBJECT", "string", "Тема", required=True),
    f("CREATED", "datetime", "Дата создания", **RO),
    f("LAST_UPDATED", "datetime", "Дата изменения", **RO),
    f("START_TIME", "datetime", "Время начала"),
    f("END_TIME", "datetime", "Время окончания"),
    f("DEADLINE", "datetime", "Срок исполнения", **RO),
    f("COMPLETED", "char", "Выполнено"),
    f("STATUS", "crm_enum_activitystatus", "Статус"),
    f("RESPONSIBLE_ID", "user", "Ответственный"),
    f("PRIORITY", "crm_enum_activitypriority", "Важность"),
    f("NOTIFY_TYPE", "crm_enum_activitynotifytype", "Тип уведомления"),
    f("NOTIFY_VALUE", "integer", "Значение уведомления"),
    f("DESCRIPTION", "string", "Описание"),
    f("DESCRIPTION_TYPE", "crm_enum_contenttype", "Тип описания"),
    f("DIRECTION", "crm_enum_activitydirection", "Направление", immutable=True),
    f("LOCATION", "string", "Место"),
    f("SETTINGS", "object", "Настройки"),
    f("ORIGINATOR_ID", "string", "Источник данных"),
    f("ORIGIN_ID", "string", "ID элемента в источнике данных"),
    f("AUTHOR_ID", "user", "Создатель"),
    f("EDITOR_ID", "user", "Редактор"),
    f("BINDINGS", "crm_activity_binding", "Привязки", multiple=True, read_only=True),
    f("COMMUNICATIONS", "crm_activity_communication", "Коммуникации", multiple=True),
    f("FILES", "diskfile", "Файлы", multiple=True),
)

# Fields a legacy ``*.list`` returns only when named in ``select`` (multi-value and heavy ones).
SELECT_ONLY = frozenset({"PHONE", "EMAIL", "WEB", "COMMUNICATIONS", "FILES", "BINDINGS",
                         "SETTINGS"})

DEAL_STAGES: dict[str, str] = {
    "NEW": "Новая",
    "PREPARATION": "Подготовка документов",
    "PREPAYMENT_INVOICE": "Счёт на предоплату",
    "EXECUTING": "В работе",
    "FINAL_INVOICE": "Финальный счёт",
    "WON": "Сделка успешна",
    "LOSE": "Сделка провалена",
    "APOLOGY": "Анализ причины провала",
}


def stage_semantic(stage_id: str) -> str:
    """``P`` in progress, ``S`` success, ``F`` failure, from a deal's stage (any category)."""
    base = stage_id.split(":", 1)[-1]
    if base in ("WON", "SUCCESS"):  # Smart processes end in ``DT<type>_<cat>:SUCCESS``/``:FAIL``.
        return "S"
    if base in ("LOSE", "APOLOGY", "FAIL"):
        return "F"
    return "P"


def smart_item_fields() -> dict[str, FieldDef]:
    """Standard fields of a smart-process (or smart-invoice) item; each type gets its own copy."""
    return fields(
        f("ID", "integer", "ID", **RO),
        f("XML_ID", "string", "Внешний код"),
        f("TITLE", "string", "Название"),
        f("CREATED_BY", "user", "Кем создан", **RO),
        f("UPDATED_BY", "user", "Кем изменён", **RO),
        f("MOVED_BY", "user", "Кем перемещён", **RO),
        f("CREATED_TIME", "datetime", "Создан", **RO),
        f("UPDATED_TIME", "datetime", "Изменён", **RO),
        f("MOVED_TIME", "datetime", "Перемещён", **RO),
        f("CATEGORY_ID", "crm_category", "Воронка"),
        f("OPENED", "boolean", "Доступен для всех"),
        f("STAGE_ID", "crm_status", "Стадия"),
        f("PREVIOUS_STAGE_ID", "crm_status", "Предыдущая стадия", **RO),
        f("STAGE_SEMANTIC_ID", "string", "Группа стадии", **RO),
        f("BEGINDATE", "date", "Дата начала"),
        f("CLOSEDATE", "date", "Дата завершения"),
        f("COMPANY_ID", "crm_company", "Компания"),
        f("CONTACT_ID", "crm_contact", "Контакт"),
        f("CONTACT_IDS", "crm_contact", "Контакты", multiple=True),
        f("OPPORTUNITY", "double", "Сумма"),
        f("IS_MANUAL_OPPORTUNITY", "boolean", "Сумма заполняется вручную"),
        f("TAX_VALUE", "double", "Сумма налога"),
        f("CURRENCY_ID", "crm_currency", "Валюта"),
        f("MYCOMPANY_ID", "crm_company", "Реквизиты вашей компании"),
        f("SOURCE_ID", "crm_status", "Источник", status_type="SOURCE"),
        f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
        f("ASSIGNED_BY_ID", "user", "Ответственный"),
        f("OBSERVERS", "user", "Наблюдатели", multiple=True),
        f("LAST_ACTIVITY_TIME", "datetime", "Последняя активность", **RO),
        f("LAST_ACTIVITY_BY", "user", "Автор последней активности", **RO),
    )


# ``crm.stagehistory.list`` rows (deals, new invoices, smart processes).
STAGE_HISTORY = fields(
    f("ID", "integer", "ID"),
    f("TYPE_ID", "integer", "Тип записи"),
    f("OWNER_TYPE_ID", "integer", "Тип владельца"),
    f("OWNER_ID", "integer", "Владелец"),
    f("CREATED_TIME", "datetime", "Время"),
    f("CATEGORY_ID", "integer", "Воронка"),
    f("STAGE_SEMANTIC_ID", "string", "Семантика стадии"),
    f("STAGE_ID", "string", "Стадия"),
)

TIMELINE_COMMENT = fields(
    f("ID", "integer", "ID", **RO),
    f("CREATED", "datetime", "Создан", **RO),
    f("ENTITY_ID", "integer", "Элемент"),
    f("ENTITY_TYPE", "string", "Тип элемента"),
    f("AUTHOR_ID", "user", "Автор"),
    f("COMMENT", "string", "Комментарий"),
    f("FILES", "diskfile", "Файлы", multiple=True),
)

# What ``crm.*.userfield.list`` filters and sorts on.
USERFIELD = fields(
    f("ID", "integer", "ID"),
    f("ENTITY_ID", "string"),
    f("FIELD_NAME", "string"),
    f("USER_TYPE_ID", "string"),
    f("XML_ID", "string"),
    f("SORT", "integer"),
    f("MULTIPLE", "char"),
    f("MANDATORY", "char"),
    f("SHOW_FILTER", "char"),
    f("SHOW_IN_LIST", "char"),
    f("EDIT_IN_LIST", "char"),
    f("IS_SEARCHABLE", "char"),
)

# Flags of ``crm.type.*`` (smart processes), "Y"/"N" strings in every response.
CRM_TYPE_FLAGS = (
    "IS_CATEGORIES_ENABLED", "IS_STAGES_ENABLED", "IS_BEGIN_CLOSE_DATES_ENABLED",
    "IS_CLIENT_ENABLED", "IS_USE_IN_USERFIELD_ENABLED", "IS_LINK_WITH_PRODUCTS_ENABLED",
    "IS_MYCOMPANY_ENABLED", "IS_DOCUMENTS_ENABLED", "IS_SOURCE_ENABLED", "IS_OBSERVERS_ENABLED",
    "IS_RECYCLEBIN_ENABLED", "IS_AUTOMATION_ENABLED", "IS_BIZ_PROC_ENABLED",
    "IS_SET_OPEN_PERMISSIONS", "IS_PAYMENTS_ENABLED", "IS_COUNTERS_ENABLED",
)

CRM_TYPE = fields(
    f("ID", "integer", "ID", **RO),
    f("TITLE", "string", "Название"),
    f("CODE", "string", "Код"),
    f("CREATED_BY", "user", "Кем создан", **RO),
    f("ENTITY_TYPE_ID", "integer", "Идентификатор типа"),
    f("CUSTOM_SECTION_ID", "integer", "Цифровое рабочее место"),
    *(f(flag, "boolean", flag) for flag in CRM_TYPE_FLAGS),
    f("CREATED_TIME", "datetime", "Создан", **RO),
    f("UPDATED_TIME", "datetime", "Изменён", **RO),
    f("UPDATED_BY", "user", "Кем изменён", **RO),
)
