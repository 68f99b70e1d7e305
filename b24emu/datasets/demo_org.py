"""The NOIS organisation: departments, employees, workgroups and the client-card user fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from b24emu.datasets.demo_common import ANCHOR, TZ, Rep, World
from b24emu.datasets.names import Person, translit
from b24emu.userfields import register_userfield

SALES_DEPT = "Отдел продаж"
REP_POSITION = "Менеджер по развитию"
GROUP_PROCUREMENT = "Заявки в закупки"
GROUP_LOGISTICS = "Логистика: доставка"
GROUP_MARKETING = "Маркетинг: идеи для контента"

# (name, second name, last name, female, cities, visits/month, training skip, mailing skip,
#  ideas/month, needs-report skip, fast replies, NPS shift). Two reps fall short of 30 visits.
_REPS = (
    ("Анна", "Игоревна", "Белова", True, ("Новосибирск",), 35, 0.05, 0.05, 2.6, 0.04, 0.92, 1),
    ("Сергей", "Андреевич", "Мельников", False, ("Новосибирск", "Кольцово"), 32, 0.15, 0.1,
     2.0, 0.1, 0.85, 0),
    ("Екатерина", "Павловна", "Зуева", True, ("Бердск", "Искитим", "Академгородок", "Обь"), 33,
     0.1, 0.05, 2.8, 0.05, 0.9, 1),
    ("Игорь", "Валерьевич", "Тихонов", False, ("Барнаул", "Бийск"), 27, 0.35, 0.3, 1.2, 0.25,
     0.7, -1),
    ("Максим", "Олегович", "Руденко", False, ("Кемерово", "Новокузнецк"), 31, 0.2, 0.15, 1.8,
     0.12, 0.8, 0),
    ("Наталья", "Сергеевна", "Гаврилова", True, ("Томск", "Омск", "Колывань"), 24, 0.4, 0.35,
     0.9, 0.3, 0.65, -2),
)
# (department, name, second name, last name, female, position); the first of each is its head.
_STAFF = (
    ("Закупки", "Елена", "Михайловна", "Кравцова", True, "Руководитель отдела закупок"),
    ("Закупки", "Павел", "Николаевич", "Чернов", False, "Специалист по закупкам"),
    ("Логистика", "Андрей", "Викторович", "Лапин", False, "Руководитель отдела логистики"),
    ("Логистика", "Ирина", "Олеговна", "Шестакова", True, "Логист"),
    ("Маркетинг", "Юлия", "Александровна", "Федотова", True, "Руководитель маркетинга"),
    ("Маркетинг", "Дарья", "Романовна", "Орлова", True, "Контент-менеджер"),
)

CARD_FIELDS = (
    ("CRM_COMPANY", "UF_CRM_CARD_NEEDS", "string", "Потребности"),
    ("CRM_COMPANY", "UF_CRM_CARD_COMPETITORS", "string", "Конкуренты"),
    ("CRM_COMPANY", "UF_CRM_CARD_POTENTIAL", "double", "Потенциал, руб/год"),
    ("CRM_COMPANY", "UF_CRM_CARD_BUDGET", "double", "Годовой бюджет на комплектующие, руб"),
    ("CRM_COMPANY", "UF_CRM_CARD_UPDATED", "date", "Карта клиента обновлена"),
    ("CRM_CONTACT", "UF_CRM_NPS_SCORE", "integer", "NPS: оценка"),
    ("CRM_CONTACT", "UF_CRM_NPS_DATE", "date", "NPS: дата ответа"),
)


def _user(w: World, who: Person, position: str, *, dept: int, registered: datetime,
          phone_ext: int) -> int:
    email = f"{translit(who.name)[0]}.{translit(who.last_name)}@nois.example"
    return w.portal.users.insert({
        "XML_ID": None, "ACTIVE": True, "NAME": who.name, "LAST_NAME": who.last_name,
        "SECOND_NAME": who.second_name, "TITLE": "", "EMAIL": email,
        "LAST_LOGIN": ANCHOR - timedelta(hours=15 + phone_ext % 7),
        "DATE_REGISTER": registered, "TIME_ZONE": "Asia/Novosibirsk", "IS_ONLINE": "N",
        "TIME_ZONE_OFFSET": "0", "TIMESTAMP_X": None, "LAST_ACTIVITY_DATE": None,
        "PERSONAL_GENDER": "F" if who.female else "M", "PERSONAL_BIRTHDAY": "",
        "PERSONAL_MOBILE": f"+7 (913) {700 + phone_ext:03d}-{(phone_ext * 37) % 100:02d}-"
                           f"{(phone_ext * 53) % 100:02d}",
        "PERSONAL_CITY": "Новосибирск", "WORK_PHONE": f"+7 (383) 363-10-10 доб. {phone_ext}",
        "WORK_POSITION": position, "UF_EMPLOYMENT_DATE": registered.date().isoformat(),
        "UF_DEPARTMENT": [dept], "USER_TYPE": "employee",
    })


def _group(w: World, name: str, description: str, *, owner: int, members: list[int],
           created: datetime, opened: str) -> int:
    unique = list(dict.fromkeys([owner, *members]))
    gid = w.portal.groups.insert({
        "SITE_ID": "s1", "NAME": name, "DESCRIPTION": description, "DATE_CREATE": created,
        "DATE_UPDATE": created, "DATE_ACTIVITY": ANCHOR - timedelta(hours=16),
        "ACTIVE": "Y", "VISIBLE": "Y", "OPENED": opened, "CLOSED": "N", "SUBJECT_ID": 1,
        "OWNER_ID": owner, "KEYWORDS": "", "NUMBER_OF_MEMBERS": len(unique), "PROJECT": "N",
        "SUBJECT_NAME": "Рабочие группы",
    })
    w.portal.group_members[gid] = set(unique)
    return gid


def build_org(w: World) -> None:
    """Departments, users (admin, РОП, six reps, other departments), workgroups, user fields."""
    p = w.portal
    since = datetime(2019, 3, 1, 10, 0, tzinfo=TZ)
    root = p.departments.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
    w.admin = p.users.insert({
        "XML_ID": None, "ACTIVE": True, "IS_ADMIN": True, "NAME": "Алексей",
        "LAST_NAME": "Админов", "SECOND_NAME": "Викторович", "TITLE": "",
        "EMAIL": "admin@nois.example", "LAST_LOGIN": ANCHOR - timedelta(hours=17),
        "DATE_REGISTER": since, "TIME_ZONE": "Asia/Novosibirsk", "IS_ONLINE": "N",
        "TIME_ZONE_OFFSET": "0", "TIMESTAMP_X": None, "LAST_ACTIVITY_DATE": None,
        "PERSONAL_GENDER": "M", "PERSONAL_BIRTHDAY": "", "PERSONAL_MOBILE": "",
        "PERSONAL_CITY": "Новосибирск", "WORK_PHONE": "+7 (383) 363-10-10 доб. 100",
        "WORK_POSITION": "Администратор Битрикс24", "UF_EMPLOYMENT_DATE": "2019-03-01",
        "UF_DEPARTMENT": [root], "USER_TYPE": "employee",
    })
    sales = p.departments.insert({"NAME": SALES_DEPT, "SORT": 100, "PARENT": root,
                                  "UF_HEAD": None})
    w.sales_dept = sales
    depts = {name: p.departments.insert({"NAME": name, "SORT": 200 + 100 * i, "PARENT": root,
                                         "UF_HEAD": None})
             for i, name in enumerate(("Закупки", "Логистика", "Маркетинг"))}
    w.rop = _user(w, Person("Дмитрий", "Сергеевич", "Колесников", False),
                  "Руководитель отдела продаж", dept=sales, registered=since + timedelta(days=40),
                  phone_ext=101)
    p.departments.rows[sales]["UF_HEAD"] = w.rop
    for i, (name, second, last, female, cities, visits, tskip, mskip, ideas, nskip, fast,
            nps) in enumerate(_REPS):
        uid = _user(w, Person(name, second, last, female), REP_POSITION, dept=sales,
                    registered=since + timedelta(days=120 + 150 * i), phone_ext=110 + i)
        w.reps.append(Rep(uid, Person(name, second, last, female), cities, visits, tskip, mskip,
                          ideas, nskip, fast, nps))
    teams = {"Закупки": w.procurement, "Логистика": w.logistics, "Маркетинг": w.marketing}
    for i, (dept, name, second, last, female, position) in enumerate(_STAFF):
        uid = _user(w, Person(name, second, last, female), position, dept=depts[dept],
                    registered=since + timedelta(days=60 + 90 * i), phone_ext=120 + i)
        if not teams[dept]:
            p.departments.rows[depts[dept]]["UF_HEAD"] = uid
        teams[dept].append(uid)
    reps = [r.user_id for r in w.reps]
    created = datetime(2023, 2, 6, 11, 0, tzinfo=TZ)
    w.groups[GROUP_PROCUREMENT] = _group(
        w, GROUP_PROCUREMENT, "Заявки отдела продаж в закупки: еженедельные потребности "
        "клиентов, заказные позиции, рекламации.", owner=w.procurement[0],
        members=[*w.procurement, w.rop, *reps], created=created, opened="N")
    w.groups[GROUP_LOGISTICS] = _group(
        w, GROUP_LOGISTICS, "Доставка заказов клиентам и перемещения товаров.",
        owner=w.logistics[0], members=[*w.logistics, w.rop, *reps],
        created=created + timedelta(days=2), opened="N")
    w.groups[GROUP_MARKETING] = _group(
        w, GROUP_MARKETING, "Идеи для контент-плана: не меньше 2–3 в месяц от каждого "
        "менеджера.", owner=w.marketing[0], members=[*w.marketing, w.rop, *reps],
        created=created + timedelta(days=30), opened="Y")
    for entity, name, kind, label in CARD_FIELDS:
        fields: dict[str, Any] = {"FIELD_NAME": name, "USER_TYPE_ID": kind,
                                  "EDIT_FORM_LABEL": label, "SHOW_FILTER": "Y"}
        register_userfield(p, entity, fields)

