"""The pure core of the upgrade bot: records, rules, errors and ports. No I/O here."""
