"""Users, departments and workgroups."""

from __future__ import annotations

from b24emu.schema import f, fields

USER = fields(
    f("ID", "integer", "ID", read_only=True),
    f("XML_ID", "string"),
    f("ACTIVE", "boolean"),
    f("NAME", "string"),
    f("LAST_NAME", "string"),
    f("SECOND_NAME", "string"),
    f("TITLE", "string"),
    f("EMAIL", "string"),
    f("LAST_LOGIN", "datetime"),
    f("DATE_REGISTER", "datetime"),
    f("TIME_ZONE", "string"),
    f("IS_ONLINE", "char"),
    f("TIME_ZONE_OFFSET", "string"),
    f("TIMESTAMP_X", "string"),
    f("LAST_ACTIVITY_DATE", "string"),
    f("PERSONAL_GENDER", "string"),
    f("PERSONAL_BIRTHDAY", "string"),
    f("PERSONAL_MOBILE", "string"),
    f("PERSONAL_CITY", "string"),
    f("WORK_PHONE", "string"),
    f("WORK_POSITION", "string"),
    f("UF_EMPLOYMENT_DATE", "string"),
    f("UF_DEPARTMENT", "integer", multiple=True),
    f("USER_TYPE", "string"),
)

DEPARTMENT = fields(
    f("ID", "integer", "ID", read_only=True),
    f("NAME", "string", "Название"),
    f("SORT", "integer", "Сортировка"),
    f("PARENT", "integer", "Родительское подразделение"),
    f("UF_HEAD", "user", "Руководитель"),
)

GROUP = fields(
    f("ID", "integer", "ID", read_only=True),
    f("SITE_ID", "string"),
    f("NAME", "string"),
    f("DESCRIPTION", "string"),
    f("DATE_CREATE", "datetime"),
    f("DATE_UPDATE", "datetime"),
    f("DATE_ACTIVITY", "datetime"),
    f("ACTIVE", "char"),
    f("VISIBLE", "char"),
    f("OPENED", "char"),
    f("CLOSED", "char"),
    f("SUBJECT_ID", "integer"),
    f("OWNER_ID", "user"),
    f("KEYWORDS", "string"),
    f("NUMBER_OF_MEMBERS", "integer"),
    f("PROJECT", "char"),
    f("SUBJECT_NAME", "string"),
)
