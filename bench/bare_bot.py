"""A bare python-telegram-bot bot in webhook mode: the same replies as our bot, nothing else.

No engine, no store, no rate limiter: /start sends the welcome and the first question in one
message (as ours does); a tap answers the query, turns the question into a record of the
answer (editMessageText) and sends the next question. Same texts and keyboards as the demo
flow, so both bots make the same Bot API calls with the same payloads.

Usage (bench/bench_telegram.py starts it): TELEGRAM_BOT_TOKEN, TELEGRAM_BASE_URL,
WEBHOOK_PORT, WEBHOOK_SECRET set; BARE_CONCURRENT=1 handles updates concurrently
(PTB's default is one at a time).

    .venv/bin/python bench/bare_bot.py
"""

from __future__ import annotations

import os

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

H = "ddadd9e9"
WELCOME = ("This is a demo. It can't diagnose you; it helps you decide where to get care. "
           "If this is an emergency, call 911.")
FIRST = "Since the pain started, have you had any of these? Tap all that apply, then Done."
SECOND = ("Just to be sure: any trouble starting to pee, or not feeling when your bladder is "
          "full?")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def keyboard(rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(text, callback_data=data)]
                                 for text, data in rows])


FIRST_KB = keyboard([("⬜ Trouble peeing or pooing", f"t|{H}|red_flags|0"),
                     ("⬜ Numb between the legs", f"t|{H}|red_flags|1"),
                     ("⬜ A leg getting weaker", f"t|{H}|red_flags|2"),
                     ("None of these", f"n|{H}|red_flags|0"),
                     ("Done", f"d|{H}|red_flags|0")])
SECOND_KB = keyboard([("No", f"a|{H}|bladder_check|0"), ("Yes", f"a|{H}|bladder_check|1"),
                      ("Not sure", f"a|{H}|bladder_check|2"),
                      ("◀ Back", f"b|{H}|bladder_check|0")])


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the welcome and the first question."""
    assert update.effective_chat is not None
    await update.effective_chat.send_message(f"{WELCOME}\n\n{FIRST}", parse_mode=ParseMode.HTML,
                                             reply_markup=FIRST_KB,
                                             link_preview_options=NO_PREVIEW)


async def tap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer the tap, keep the question as a record of the answer, ask the next one."""
    query = update.callback_query
    assert query is not None and update.effective_chat is not None
    await query.answer()
    await query.edit_message_text(f"{FIRST}\n\n✔️ <b>None of these</b>",
                                  parse_mode=ParseMode.HTML)
    await update.effective_chat.send_message(SECOND, parse_mode=ParseMode.HTML,
                                             reply_markup=SECOND_KB,
                                             link_preview_options=NO_PREVIEW)


def main() -> None:
    port = int(os.environ["WEBHOOK_PORT"])
    app = (Application.builder().token(os.environ["TELEGRAM_BOT_TOKEN"])
           .base_url(os.environ["TELEGRAM_BASE_URL"])
           .concurrent_updates(os.environ.get("BARE_CONCURRENT") == "1")
           .build())
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(tap))
    app.run_webhook(listen="127.0.0.1", port=port, url_path="hook",
                    webhook_url=f"http://127.0.0.1:{port}/hook",
                    secret_token=os.environ["WEBHOOK_SECRET"], allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
