"""Channels: console and Telegram, plus the conversation service they share."""
