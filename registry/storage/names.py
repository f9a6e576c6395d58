"""How Tailor names things in the registry: a version's status tag values, its aliases, and the
prefix of every tenant's registered model. Plain constants, so that any part can read them
without importing the part that writes them."""
from __future__ import annotations

PENDING, APPROVED, REJECTED, ROLLED_BACK = "pending", "approved", "rejected", "rolled_back"
CANDIDATE, CHAMPION = "candidate", "champion"
PREFIX = "tailor-tenant-"
