"""The Bot API through python-telegram-bot: one `Bot` per process and bot (its HTTP
connections pooled), messages with an inline keyboard for a question's options, and
the Bot API's answers turned into the send path's outcomes.

Outcomes: accepted is sent (the message id kept); 403 (the customer blocked the bot)
and 400 "chat not found" are final and say the address takes nothing more; 429 with
`retry_after` is "slow down" (the route's rate adapts, the message is deferred); a
refused token is a refused login; no answer (a timeout, a refused connection) is
worth a retry.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("PTB_TIMEDELTA", "1")  # retry_after as a timedelta, as PTB 23 has it
from dataclasses import dataclass, field

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from app.core.statuses import AttemptOutcome

SENT, RETRY, FAILED, AUTH = AttemptOutcome
LOCAL_TOKEN = "100000001:local-bot-token"  # the embedded Bot API server's bot (local mode)
BLOCKED, BAD_REQUEST = 403, 400  # the codes of the final refusals


def gone(outcome_code: int | None, error: str | None) -> str | None:
    """Why a refusal says the chat takes nothing more: the customer blocked the bot, or
    the chat does not exist (None: it says nothing of the chat)."""
    if outcome_code == BLOCKED:
        return "blocked the bot"
    if outcome_code == BAD_REQUEST and "chat not found" in (error or "").lower():
        return "chat not found"
    return None


@dataclass(frozen=True)
class BotLogin:
    """Which Bot API and which bot (a route's target; the token never printed)."""

    api_url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class TelegramMessage:
    chat_id: int
    text: str
    reference: str  # the delivery or turn it carries (logs)
    options: tuple[str, ...] = ()  # buttons, one per row; pressing one says its number


@dataclass(frozen=True)
class TelegramOutcome:
    status: str
    code: int | None = None
    error: str | None = None
    message_id: int | None = None


def keyboard(options: tuple[str, ...]) -> InlineKeyboardMarkup | None:
    """A question's options as buttons; a press says the option's number, as "1" typed
    would."""
    if not options:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=str(n))]
                                 for n, label in enumerate(options, 1)])


def redacted(text: str, token: str) -> str:
    """The text with the bot's token (and its secret half) taken out: the Bot API's own
    messages name it ("The token `...` was rejected")."""
    for secret in {token, token.partition(":")[2]} - {""}:
        text = text.replace(secret, "<token>")
    return text


def classify(exc: TelegramError, token: str = "") -> TelegramOutcome:
    message = redacted(str(exc), token)[:300]
    if isinstance(exc, RetryAfter):
        return TelegramOutcome(RETRY, 429, message)
    if isinstance(exc, Forbidden):
        return TelegramOutcome(FAILED, BLOCKED, message)
    if isinstance(exc, InvalidToken):
        return TelegramOutcome(AUTH, 401, message)
    if isinstance(exc, BadRequest):
        return TelegramOutcome(FAILED, BAD_REQUEST, message)
    return TelegramOutcome(RETRY, None, message)  # NetworkError, TimedOut: no answer


_bots: dict[tuple[int, BotLogin], Bot] = {}


def bot_for(login: BotLogin) -> Bot:
    """This process's (and event loop's) Bot for the login (a long-lived loop's: a send
    worker's, a replica's, an actor's)."""
    key = (id(asyncio.get_running_loop()), login)
    bot = _bots.get(key)
    if bot is None:
        bot = _bots[key] = _bot(login)
    return bot


def _bot(login: BotLogin) -> Bot:
    request = HTTPXRequest(connection_pool_size=64, read_timeout=30, connect_timeout=10)
    return Bot(login.token, base_url=f"{login.api_url.rstrip('/')}/bot", request=request)


class TelegramSender:
    """Sends one message at a time over the process's Bot."""

    def __init__(self, login: BotLogin):
        self.bot = bot_for(login)
        self.token = login.token

    async def send(self, message: TelegramMessage) -> TelegramOutcome:
        try:
            sent = await self.bot.send_message(message.chat_id, message.text,
                                               reply_markup=keyboard(message.options))
        except TelegramError as exc:
            return classify(exc, self.token)
        return TelegramOutcome(SENT, 200, None, sent.message_id)


async def set_webhook(login: BotLogin, url: str, secret: str) -> None:
    """Have the Bot API post this bot's updates to `url` with `secret` in the
    `X-Telegram-Bot-Api-Secret-Token` header (done by the launcher on each deploy)."""
    try:
        async with _bot(login) as bot:  # its own, closed after (the launcher's loop ends
            await bot.set_webhook(url, secret_token=secret, allowed_updates=[  # after the
                "message", "callback_query", "my_chat_member"])  # call); getMe checks it
    except TelegramError as exc:
        raise TelegramError(redacted(str(exc), login.token)) from None
