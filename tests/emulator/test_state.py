"""``save_state``/``load_state``: a restarted emulator keeps the portal as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.limits import LimitSettings
from b24emu.state import load_state, save_state
from tests.emulator.helpers import Receiver, add_user, bind, emit, hook, install, oauth, refresh


def test_round_trip_keeps_tables_tokens_bindings_and_queue(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    """Tables, tokens, bindings, options, widgets and the offline queue survive a restart."""
    portal = emulator.portal
    portal.departments.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
    add_user(portal, "Manager")
    portal.clock.set(datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC), frozen=True)
    with Receiver() as rcv:
        app = install(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        oauth(emulator, app.access, "event.bind",
              {"event": "ONCRMDEALUPDATE", "event_type": "offline"})
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:7", 7)
        oauth(emulator, app.access, "app.option.set", {"options": {"anchor": "2025-01-01"}})
        oauth(emulator, app.access, "placement.bind",
              {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": rcv.url("/tab")})
        state = tmp_path / "portal.state"
        save_state(portal, state)
        assert state.exists() and not state.with_suffix(".state.tmp").exists()

        fresh = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
        load_state(fresh, state)
        # Portal time resumes where it was (frozen here), so tokens keep their lifetime.
        assert fresh.clock.timestamp() == portal.clock.timestamp()
        with EmulatorServer(fresh) as again:
            assert [r["NAME"] for r in fresh.users] == ["Алексей", "Manager"]
            assert fresh.departments.get(1) == portal.departments.get(1)
            # The same app keys, webhook and tokens work on the restarted portal.
            assert fresh.app.client_id == portal.app.client_id
            assert hook(again, "user.current").json()["result"]["ID"] == "1"
            assert oauth(again, app.access, "user.current").status_code == 200
            assert oauth(again, app.access, "app.option.get",
                         {"option": "anchor"}).json()["result"] == "2025-01-01"
            assert len(oauth(again, app.access, "placement.get").json()["result"]) == 1
            events = oauth(again, app.access, "event.offline.get").json()["result"]["events"]
            assert [e["EVENT_DATA"] for e in events] == [{"FIELDS": {"ID": 7}}]
            # Bindings still deliver, and new ones continue the ID sequence.
            emit(again, app.access, "ONCRMDEALADD", "deal:8", 8)
            assert fresh.events.wait_idle(5)
            assert rcv.on("/events")[-1].form["data[FIELDS][ID]"] == "8"
            bind(again, app.access, "ONCRMDEALDELETE", rcv.url("/events"))
            ids = [b.id for b in fresh.events.bindings]
            assert len(set(ids)) == len(ids) == 3
            # The refresh token is still single-use across the restart.
            assert refresh(again, app.refresh).status_code == 200
            assert refresh(again, app.refresh).json()["error"] == "invalid_grant"
