"""The upgrade bot: plans, approves and runs product upgrades from chat."""
