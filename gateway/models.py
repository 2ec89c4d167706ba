"""Every table on SQLModel.metadata, for Alembic and for code that needs them all."""

from catalogue.freshness import DatasetStatus
from catalogue.models import CatalogueState, Dataset, DatasetField, Department
from catalogue.protection import DataKey
from gateway.audit.alert_handling import AuditAlertAction
from gateway.audit.alerts import AuditAlert, AuditAlertCursor
from gateway.audit.checkpoints import AuditCheckpoint
from gateway.audit.forward import AuditForwardCursor
from gateway.audit.models import AuditChainHead, AuditEvent
from gateway.crypto.models import DepartmentKey
from gateway.grants.models import GrantRecord
from gateway.identity.models import (
    ApiKey,
    AuthorizationCode,
    Enterprise,
    OAuthClient,
    RefreshToken,
    RevokedToken,
    TrustedIssuer,
    User,
)
from gateway.portal.usage import UsageDaily, UsageRollupCursor
from gateway.watermark_keys import WatermarkKey
from gateway.web.models import WebSession
from gateway.workflow.demands import Demand
from gateway.workflow.kpi import KpiSnapshot
from gateway.workflow.models import Application, ApplicationEvent
from gateway.workflow.quality import QualityReport

__all__ = [
    "ApiKey",
    "Application",
    "ApplicationEvent",
    "AuditAlert",
    "AuditAlertAction",
    "AuditAlertCursor",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditForwardCursor",
    "AuthorizationCode",
    "CatalogueState",
    "DataKey",
    "Dataset",
    "DatasetField",
    "DatasetStatus",
    "Demand",
    "Department",
    "DepartmentKey",
    "Enterprise",
    "GrantRecord",
    "KpiSnapshot",
    "OAuthClient",
    "QualityReport",
    "RefreshToken",
    "RevokedToken",
    "TrustedIssuer",
    "UsageDaily",
    "UsageRollupCursor",
    "User",
    "WatermarkKey",
    "WebSession",
]
