"""VideoAnyUp training: multi-zoom crop objective, consistency and temporal terms, data, system, command line."""
