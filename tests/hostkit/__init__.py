"""The test hosts: real services (dockerd, a registry, PostgreSQL, sshd) started for the tests."""
