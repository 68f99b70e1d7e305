"""The fake gateway honours the Gateway protocol (mypy checks the assignment)."""

from __future__ import annotations

from b24app.gateway.protocol import Gateway
from b24app.gateway.types import Task
from tests.fakes import FakeGateway


def test_fake_gateway_is_a_gateway() -> None:
    """A structural check: the fake stays in step with the protocol."""
    gateway: Gateway = FakeGateway()
    fake = FakeGateway()
    fake.put("task", Task(1, "Отправить КП", "", 2, 1, 2, None, None, None, None, None, 0))
    gateway = fake
    task = gateway.get_task(1)
    assert task is not None and task.title == "Отправить КП"
    assert gateway.get_task(2) is None
    assert gateway.bind_event("ONTASKADD", "https://app/b24/events") is True
    assert gateway.bind_event("ONTASKADD", "https://app/b24/events") is False
