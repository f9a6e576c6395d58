"""The multi-tenant prediction API (`tailor serve-api`)."""
