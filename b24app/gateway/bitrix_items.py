"""Smart-process items over ``crm.item.*`` and ``userfieldconfig.*``, mixed into BitrixGateway."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from b24app.gateway.client import MAX_BATCH, BitrixClient, pages_to_rows
from b24app.gateway.errors import B24Error, BadRequest, Transport
from b24app.gateway.protocol import UserFieldSpec
from b24app.gateway.wire import to_int

Row = dict[str, Any]
ParamsFn = Callable[[int, Row], Row]
# User-field names stay UF_CRM_<id>_... both ways: the camelCase conversion of crm.item is
# ambiguous for names with digits (platform doc 5.1), so it is never relied on.
ORIGINAL_UF = {"useOriginalUfNames": "Y"}


class ItemCalls:
    """Smart-process fields and items; ``BitrixGateway`` mixes it in."""

    _client: BitrixClient

    if TYPE_CHECKING:
        def _update_chunk(self, method: str, chunk: dict[int, Row],
                          params: ParamsFn | None = None) -> dict[int, B24Error | None]:
            """Provided by ``BitrixGateway``: one batch with the 429 waits."""
            ...

    def item_fields(self, entity_type_id: int) -> list[str]:
        """``crm.item.fields`` → the UPPER names of the items' user fields."""
        value = self._client.call("crm.item.fields",
                                  {"entityTypeId": entity_type_id, **ORIGINAL_UF}).value
        fields = value.get("fields") if isinstance(value, dict) else None
        names = (str(info.get("upperName") or name) if isinstance(info, dict) else str(name)
                 for name, info in (fields or {}).items())
        return [n for n in names if n.upper().startswith("UF_")]

    def add_item_userfield(self, type_settings_id: int, spec: UserFieldSpec) -> None:
        """``userfieldconfig.add`` on ``CRM_<type id>``; a field that exists already is kept."""
        error = self.add_item_userfields(type_settings_id, [spec])[spec.name]
        if error is not None:
            raise error

    def add_item_userfields(self, type_settings_id: int, specs: Sequence[UserFieldSpec]
                            ) -> dict[str, B24Error | None]:
        """``userfieldconfig.add`` in batches of 50 (an install must not take a minute)."""
        out: dict[str, B24Error | None] = {}
        for start in range(0, len(specs), MAX_BATCH):
            chunk = list(specs[start:start + MAX_BATCH])
            results = self._client.batch({
                f"f{i}": ("userfieldconfig.add", {"moduleId": "crm",
                                                  "field": _field(type_settings_id, spec)})
                for i, spec in enumerate(chunk)})
            for i, spec in enumerate(chunk):
                result = results[f"f{i}"]
                # Already there (a concurrent install, a lost answer): what we wanted exists.
                out[spec.name] = (result if isinstance(result, B24Error) and not _exists(result)
                                  else None)
        return out

    def add_item(self, entity_type_id: int, fields: Mapping[str, Any]) -> int:
        """``crm.item.add`` → the new item's ID."""
        value = self._client.call("crm.item.add", {"entityTypeId": entity_type_id,
                                                   "fields": dict(fields), **ORIGINAL_UF}).value
        item = value.get("item") if isinstance(value, dict) else None
        if not isinstance(item, dict) or not to_int(item.get("id")):
            raise Transport("UNEXPECTED_ANSWER", "crm.item.add answered no item",
                            method="crm.item.add")
        return to_int(item.get("id"))

    def update_items(self, entity_type_id: int, changes: Mapping[int, Mapping[str, Any]]
                     ) -> dict[int, B24Error | None]:
        """``crm.item.update`` in batches of 50; each item gets None or its typed error."""
        def params(item_id: int, fields: Row) -> Row:
            return {"entityTypeId": entity_type_id, "id": item_id, "fields": fields,
                    **ORIGINAL_UF}

        out: dict[int, B24Error | None] = {rid: None for rid, f in changes.items() if not f}
        items = [(rid, dict(f)) for rid, f in changes.items() if f]
        for start in range(0, len(items), MAX_BATCH):
            out.update(self._update_chunk("crm.item.update",
                                          dict(items[start:start + MAX_BATCH]), params))
        return {rid: out[rid] for rid in changes}

    def find_items(self, entity_type_id: int, flt: Mapping[str, Any],
                   select: Sequence[str] = ()) -> list[dict[str, Any]]:
        """``crm.item.list`` by filter as a chained export, ascending ID."""
        params = {"entityTypeId": entity_type_id, "filter": dict(flt),
                  "select": list(select) or ["*"], **ORIGINAL_UF}
        return list(pages_to_rows(self._client.iter_pages("crm.item.list", params)))


def _field(type_settings_id: int, spec: UserFieldSpec) -> Row:
    """The camelCase ``field`` of ``userfieldconfig.add``."""
    return {"entityId": f"CRM_{type_settings_id}", "fieldName": spec.name,
            "userTypeId": spec.type, "multiple": "Y" if spec.multiple else "N",
            # A plain string label applies to every portal language (userfieldconfig-add.md).
            "editFormLabel": spec.label, "settings": dict(spec.settings)}


def _exists(error: B24Error) -> bool:
    """"The field X for object CRM_n already exists." (userfieldconfig-add.md tutorial)."""
    return isinstance(error, BadRequest) and "already exists" in error.description.lower()
