"""The console surface: the conversation's views as terminal text, for local use and demos."""
