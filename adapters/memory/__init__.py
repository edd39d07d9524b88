"""In-memory twins of every port: for unit tests and dry runs. Each passes its port's contract."""
