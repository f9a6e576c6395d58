"""The ground floor: settings, workspace paths, tenant ids, data versions (DVC)."""
