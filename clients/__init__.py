"""ClientApps: what runs on each (simulated or real) client node."""
