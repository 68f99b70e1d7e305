"""``userfieldconfig.*``: CRM user-field settings in camelCase, shared with ``crm.*.userfield``."""

# Doc pages cited below live in api-reference/crm/universal/userfieldconfig/ of bitrix24/b24restdocs
# (and bitrix-tools/b24-rest-docs); "tutorial" is tutorials/crm/how-to-add-crm-objects/.

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from b24emu.core import Call, Listed, has_scope, method
from b24emu.errors import ApiError
from b24emu.methods.crm import flag
from b24emu.phpquery import as_list
from b24emu.schema.crm import USERFIELD
from b24emu.serialize import camel
from b24emu.store import FilterError, parse_filter, parse_order, pick_start
from b24emu.userfields import (
    USER_TYPES,
    delete_userfield,
    entity_table,
    find_userfield,
    register_userfield,
    sync_fielddef,
    update_userfield,
)

# A string label is "a general value" (userfieldconfig-add.md): it goes to every portal language.
LANGUAGES = ("ru", "en")
# Stored label columns by their camelCase name.
LABELS = {"editFormLabel": "EDIT_FORM_LABEL", "listColumnLabel": "LIST_COLUMN_LABEL",
          "listFilterLabel": "LIST_FILTER_LABEL", "errorMessage": "ERROR_MESSAGE",
          "helpMessage": "HELP_MESSAGE"}
SCALARS = ("ID", "ENTITY_ID", "FIELD_NAME", "USER_TYPE_ID", "XML_ID", "SORT", "MULTIPLE",
           "MANDATORY", "SHOW_FILTER", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE")
UPPER = {camel(n): n for n in USERFIELD}
FLAGS = ("MULTIPLE", "MANDATORY", "EDIT_IN_LIST", "IS_SEARCHABLE")
# What update may change; entityId, fieldName, userTypeId and multiple are ignored (tutorial
# how-to-add-precision-to-user-field.md, "Key Considerations").
UPDATABLE = ("XML_ID", "SORT", "MANDATORY", "SHOW_FILTER", "IS_SEARCHABLE")
# Settings every new field gets (samples in crm-item-add.md, userfieldconfig-add.md); passed
# keys override them, and update replaces the whole set the same way (precision tutorial).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "string": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0,
               "DEFAULT_VALUE": ""},
    "integer": {"SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
    # Without PRECISION a number rounds to an integer (precision tutorial).
    "double": {"PRECISION": 0, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
    "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX", "LABEL": ["", ""],
                "LABEL_CHECKBOX": ""},
    "date": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}},
    "datetime": {"DEFAULT_VALUE": {"TYPE": "NONE", "VALUE": ""}, "USE_SECOND": "Y",
                 "USE_TIMEZONE": "N"},
    "enumeration": {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "",
                    "SHOW_NO_VALUE": "Y"},
    "url": {"POPUP": "Y", "SIZE": 20, "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": "",
            "ROWS": 1},
    "money": {"DEFAULT_VALUE": ""},
    "file": {"SIZE": 20, "LIST_WIDTH": 0, "LIST_HEIGHT": 0, "MAX_SHOW_SIZE": 0,
             "MAX_ALLOWED_SIZE": 0, "EXTENSIONS": [], "TARGET_BLANK": "Y"},
}
# Error texts (HTTP 400, empty code) from each method's error table.
CANNOT_CREATE = "You cannot create custom fields"
CANNOT_VIEW = "You do not have permission to view user field settings"
CANNOT_CHANGE = "You cannot change the settings of the user field"
CANNOT_DELETE = "You cannot delete the user field"
_NAME_CHARS = re.compile(r"^[A-Z0-9_]+$")


def _error(text: str) -> ApiError:
    """userfieldconfig.* errors: HTTP 400 with an empty ``error`` code."""
    return ApiError(400, "", text)


def _missing(name: str) -> ApiError:
    """A required parameter of the controller is absent (code 100, as every Engine method)."""
    return ApiError(400, "100", f"Could not find value for parameter {{{name}}}")


def _check_module(call: Call) -> None:
    """``moduleId`` is required; only ``crm`` is emulated and needs the ``crm`` scope too."""
    module = call.params.first("moduleId")
    if module in (None, ""):
        raise _missing("moduleId")
    if str(module) != "crm":
        raise _error("No settings for UserFieldAccess")
    # index.md: the app needs the module's scope besides userfieldconfig.
    if not has_scope(call.scopes, "crm"):
        raise _error("The current method required more scopes. (crm)")


def _upper_key(key: str) -> str:
    """``editFormLabel`` → ``EDIT_FORM_LABEL``; UPPER_SNAKE keys pass unchanged."""
    return key if key.isupper() else re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).upper()


def _field_param(call: Call) -> dict[str, Any]:
    """The ``field`` object with UPPER_SNAKE keys."""
    raw = call.params.first("field")
    if not isinstance(raw, Mapping):
        raise _missing("field")
    return {_upper_key(str(k)): v for k, v in raw.items()}


def _lang_map(value: Any) -> dict[str, str | None]:
    """A stored or sent label as ``{lang: text}`` (a plain string applies to every language)."""
    if isinstance(value, Mapping):
        return {str(k): None if v in (None, "") else str(v) for k, v in value.items()}
    if value in (None, ""):
        return {}
    return dict.fromkeys(LANGUAGES, str(value))


def _settings(user_type: str, given: Any) -> dict[str, Any]:
    """The type's defaults overridden by the sent keys; PRECISION snapped into 0..12."""
    out = {**DEFAULT_SETTINGS.get(user_type, {}), **(given if isinstance(given, Mapping) else {})}
    if "PRECISION" in out:
        try:
            out["PRECISION"] = min(12, max(0, int(out["PRECISION"])))
        except (TypeError, ValueError):
            out["PRECISION"] = 0
    return out


def _enum_items(raw: Any) -> list[dict[str, Any]]:
    """``enum`` elements (``id, value, def, sort, xmlId, del``) as stored LIST items."""
    items = []
    for item in as_list(raw):
        if isinstance(item, Mapping):
            entry = {_upper_key(str(k)): v for k, v in item.items()}
            items.append({k: flag(v) if k in ("DEF", "DEL") else v for k, v in entry.items()})
    return items


def _rename(key: str) -> str:
    """A camelCase filter/order key as the stored column (``fieldName`` → ``FIELD_NAME``)."""
    return UPPER.get(key, key)


def _sort(value: Any) -> int:
    try:
        return int(float(str(value)))
    except ValueError:
        return 100


def _show_filter(value: Any) -> str:
    """``N``/``I``/``E``/``S`` as sent, anything else a Y/N flag."""
    text = str(value).upper()
    return text if text in ("I", "E", "S") else flag(value)


def _known_entity(call: Call, entity_id: str) -> bool:
    try:
        entity_table(call.portal, entity_id)
    except ApiError:
        return False
    return True


def _check_name(entity_id: str, name: str) -> None:
    """``UF_{entityId}_{POSTFIX}``, case-sensitive, A-Z 0-9 _, at most 50 characters."""
    # Precision tutorial, "Errors and Diagnostics": each rule has its own message.
    prefix = f"UF_{entity_id}_"
    if not name.startswith(prefix) or name == prefix:
        raise _error("Incorrect field code")
    if not _NAME_CHARS.match(name):
        raise _error("Field name contains invalid characters. "
                     "Allowed characters are: A-Z, 0-9 and _.")
    if len(name) > 50:
        raise _error("Field name is too long (more than 50 characters).")


def _record(call: Call, denied: str, *, admin: bool) -> dict[str, Any]:
    """The stored field ``id``; a missing one reads as no access (userfieldconfig-get.md)."""
    row_id = call.params.int("id", required=True, error=_missing("id"))
    row = call.portal.userfields.get(row_id)
    if row is None or not str(row["ENTITY_ID"]).startswith("CRM_"):
        raise _error(denied)
    if admin and not call.portal.user_is_admin(call.user_id):
        raise _error(denied)
    return row


def render(row: Mapping[str, Any], *, wanted: set[str] | None = None,
           language: str | None = None, full: bool = True) -> dict[str, Any]:
    """A field as userfieldconfig.* return it: camelCase, strings, labels per language."""
    out: dict[str, Any] = {}
    for name in SCALARS:
        value = row.get(name)
        out[camel(name)] = str(value) if isinstance(value, int) else value
    out["settings"] = row.get("SETTINGS") or []  # PHP: an empty array is [].
    if wanted is not None:
        out = {k: v for k, v in out.items() if k in wanted}
    maps = {key: _lang_map(row.get(col)) for key, col in LABELS.items()}
    if full:
        langs = list(dict.fromkeys(lang for m in maps.values() for lang in m))
    else:
        # list returns labels only for select[language] (precision tutorial).
        langs = [language] if language else []
    if full or language:
        out["languageId"] = {lang: lang for lang in langs} or []
        for key, labels in maps.items():
            shown = {lang: labels.get(lang) for lang in langs}
            out[key] = (shown or []) if full else (shown if any(shown.values()) else None)
    if row["USER_TYPE_ID"] == "enumeration" and (wanted is None or "enum" in wanted):
        items = sorted(row.get("LIST") or [], key=lambda i: (int(i["SORT"]), int(i["ID"])))
        out["enum"] = [{"id": str(i["ID"]), "userFieldId": str(row["ID"]), "value": i["VALUE"],
                        "def": i["DEF"], "sort": str(i["SORT"]), "xmlId": i["XML_ID"]}
                       for i in items]
    return out


@method("userfieldconfig.add", "userfieldconfig")
def uf_add(call: Call) -> Any:
    """Create a field for a CRM object; ``{"field": {...}}``."""
    _check_module(call)
    given = _field_param(call)
    entity = str(given.get("ENTITY_ID") or "")
    # Tutorials: no "modify settings" right, an unknown object (e.g. entityTypeId instead of the
    # smart process id) or a type REST may not create all answer this.
    if not call.portal.user_is_admin(call.user_id) or not _known_entity(call, entity):
        raise _error(CANNOT_CREATE)
    name, user_type = str(given.get("FIELD_NAME") or ""), str(given.get("USER_TYPE_ID") or "")
    if not name:
        raise _error("The 'FIELD_NAME' field is not found.")
    if not user_type:
        raise _error("The 'USER_TYPE_ID' field is not found.")
    if user_type not in USER_TYPES and not user_type.startswith("rest_"):
        raise _error(CANNOT_CREATE)
    _check_name(entity, name)
    if find_userfield(call.portal, entity, name) is not None:
        raise _error(f"The field {name} for object {entity} already exists.")
    fields: dict[str, Any] = {
        "FIELD_NAME": name, "USER_TYPE_ID": user_type, "SORT": _sort(given.get("SORT", 100)),
        "SETTINGS": _settings(user_type, given.get("SETTINGS")),
        "SHOW_FILTER": _show_filter(given.get("SHOW_FILTER", "N")),
        "LIST": _enum_items(given.get("ENUM")) if user_type == "enumeration" else []}
    fields.update((k, flag(given.get(k, "Y" if k == "EDIT_IN_LIST" else "N"))) for k in FLAGS)
    portal = call.portal
    row = portal.userfields.rows[register_userfield(portal, entity, fields)]
    # add ignores showInList, listColumnLabel, listFilterLabel, errorMessage, label
    # (userfieldconfig-add.md); xmlId stays null unless sent.
    xml_id = given.get("XML_ID")
    row.update(XML_ID=None if xml_id in (None, "") else str(xml_id), SHOW_IN_LIST="Y",
               EDIT_FORM_LABEL=_lang_map(given.get("EDIT_FORM_LABEL")), LIST_COLUMN_LABEL={},
               LIST_FILTER_LABEL={}, ERROR_MESSAGE={},
               HELP_MESSAGE=_lang_map(given.get("HELP_MESSAGE")))
    sync_fielddef(portal, row)
    return {"field": render(row)}


@method("userfieldconfig.get", "userfieldconfig")
def uf_get(call: Call) -> Any:
    """One field's settings by ``id``; ``{"field": {...}}``."""
    _check_module(call)
    # Read access to the object is enough (userfieldconfig-get.md); every employee reads CRM here.
    return {"field": render(_record(call, CANNOT_VIEW, admin=False))}


@method("userfieldconfig.list", "userfieldconfig")
def uf_list(call: Call) -> Any:
    """Fields by camelCase filter/order, pages of 50; ``{"fields": [...]}`` with total/next."""
    _check_module(call)
    p = call.params
    raw_select = p.first("select")
    language = None
    if isinstance(raw_select, Mapping):  # {"0": "*", "language": "ru"} (userfieldconfig-list.md)
        language = raw_select.get("language")
        raw_select = [v for k, v in raw_select.items() if k != "language"]
    names = {str(v) for v in as_list(raw_select)}
    wanted = None if not names or "*" in names else names
    raw_filter = p.first("filter")
    try:
        conditions = parse_filter(raw_filter if isinstance(raw_filter, Mapping) else {},
                                  USERFIELD, call.portal.tz, rename=_rename)
    except FilterError as exc:
        raise _error(f"Invalid filter: {exc}") from None
    order = parse_order(p.first("order") or {"sort": "ASC", "id": "ASC"}, USERFIELD,
                        rename=_rename)
    page = call.portal.userfields.query(conditions, order, pick_start(p.first("start")))
    rows = [render(r, wanted=wanted, language=str(language) if language else None, full=False)
            for r in page.rows]
    return Listed({"fields": rows}, page.total, page.next)


@method("userfieldconfig.update", "userfieldconfig")
def uf_update(call: Call) -> Any:
    """Change sort, flags, labels, settings or enum items; ``{"field": {...}}``."""
    _check_module(call)
    row = _record(call, CANNOT_CHANGE, admin=True)
    given = _field_param(call)
    changes: dict[str, Any] = {k: given[k] for k in UPDATABLE if k in given}
    if "SORT" in changes:
        changes["SORT"] = _sort(changes["SORT"])
    for key in ("MANDATORY", "IS_SEARCHABLE"):
        if key in changes:
            changes[key] = flag(changes[key])
    if "SHOW_FILTER" in changes:
        changes["SHOW_FILTER"] = _show_filter(changes["SHOW_FILTER"])
    if "XML_ID" in changes:
        changes["XML_ID"] = None if changes["XML_ID"] in (None, "") else str(changes["XML_ID"])
    # Labels and settings are replaced as a whole, not merged (precision tutorial).
    if "EDIT_FORM_LABEL" in given:
        changes["EDIT_FORM_LABEL"] = _lang_map(given["EDIT_FORM_LABEL"])
    if "HELP_MESSAGE" in given:
        row["HELP_MESSAGE"] = _lang_map(given["HELP_MESSAGE"])
    if "SETTINGS" in given:
        row["SETTINGS"] = _settings(row["USER_TYPE_ID"], given["SETTINGS"])
    # enum changes apply only with userTypeId=enumeration in field (userfieldconfig-update.md).
    if "ENUM" in given and given.get("USER_TYPE_ID") == row["USER_TYPE_ID"] == "enumeration":
        changes["LIST"] = _enum_items(given["ENUM"])
    update_userfield(call.portal, row, changes)
    return {"field": render(row)}


@method("userfieldconfig.delete", "userfieldconfig")
def uf_delete(call: Call) -> Any:
    """Drop a field and its values; the result is ``null``."""
    _check_module(call)
    delete_userfield(call.portal, _record(call, CANNOT_DELETE, admin=True))
    return None
