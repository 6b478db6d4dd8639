"""Tests of bot.storage: one contract suite run against every backend."""
