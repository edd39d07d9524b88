"""Planning, the runner and recovery: the engine between the surfaces and the ports."""
