"""Tenant ids: checked before any path or model name is built from them."""
import re

from workspace.errors import UserError

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
BASE_MODEL_NAME = "tailor-base"


def check_tenant_id(tenant: str) -> str:
    """Return ``tenant`` if it is a valid id, else raise ``UserError``."""
    if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
        raise UserError(
            f"invalid tenant id {tenant!r}: use 2-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return tenant


def tenant_model_name(tenant: str) -> str:
    """The MLflow registered-model name of a tenant."""
    return f"tailor-tenant-{check_tenant_id(tenant)}"
