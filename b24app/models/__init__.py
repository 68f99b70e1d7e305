"""ORM models; importing this package registers every table on ``Base.metadata``."""

from b24app.models.base import NAMING_CONVENTION, Base, UTCDateTime, in_values, utcnow
from b24app.models.inbox import InboxEvent, InboxSource, InboxStatus
from b24app.models.kpi import (
    KpiItem,
    KpiValue,
    MirrorStageHistory,
    NpsAnswer,
    SurveyInvitation,
    WrittenValue,
)
from b24app.models.mirror import (
    MirrorActivity,
    MirrorCompany,
    MirrorContact,
    MirrorDeal,
    MirrorDepartment,
    MirrorGroup,
    MirrorRow,
    MirrorTask,
    MirrorUser,
)
from b24app.models.portal import Cipher, Portal, PortalMode, PortalStatus, SecretName
from b24app.models.rules import (
    ClockState,
    Notification,
    SlaClock,
    SlaClockEvent,
    TaskFormatCheck,
)
from b24app.models.sync import OfflineBatch, OwnWrite, SyncCursor

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Cipher",
    "ClockState",
    "InboxEvent",
    "InboxSource",
    "InboxStatus",
    "KpiItem",
    "KpiValue",
    "MirrorActivity",
    "MirrorCompany",
    "MirrorContact",
    "MirrorDeal",
    "MirrorDepartment",
    "MirrorGroup",
    "MirrorRow",
    "MirrorStageHistory",
    "MirrorTask",
    "MirrorUser",
    "Notification",
    "NpsAnswer",
    "OfflineBatch",
    "OwnWrite",
    "Portal",
    "PortalMode",
    "PortalStatus",
    "SecretName",
    "SlaClock",
    "SlaClockEvent",
    "SurveyInvitation",
    "SyncCursor",
    "TaskFormatCheck",
    "UTCDateTime",
    "WrittenValue",
    "in_values",
    "utcnow",
]
