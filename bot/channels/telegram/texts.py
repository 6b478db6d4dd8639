"""The Telegram channel's own words (not the flow's), in English and Spanish."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "back_button": {"en": "◀ Back", "es": "◀ Atrás"},
    "change_answer": {"en": "◀ Change my last answer", "es": "◀ Cambiar mi última respuesta"},
    "start_again": {"en": "↺ Start again", "es": "↺ Empezar de nuevo"},
    "confirm_restart": {
        "en": "You are part-way through. Start over? Your answers so far will be cleared.",
        "es": "Ya empezó la revisión. ¿Empezar de nuevo? Se borrarán sus respuestas.",
    },
    "yes_start_over": {"en": "Yes, start over", "es": "Sí, empezar de nuevo"},
    "no_continue": {"en": "No, continue", "es": "No, seguir"},
    "stale_button": {
        "en": "That button is from an earlier question.",
        "es": "Ese botón es de una pregunta anterior.",
    },
    "unknown_button": {
        "en": "That button is no longer active.",
        "es": "Ese botón ya no está activo.",
    },
    "not_text": {
        "en": "Sorry, I can only read text and button taps here. Please answer the question "
              "below.",
        "es": "Perdone, aquí solo puedo leer texto y botones. Responda la pregunta de abajo.",
    },
    "edited": {
        "en": "I can't use edited messages. Please send your answer as a new message.",
        "es": "No puedo usar mensajes editados. Envíe su respuesta en un mensaje nuevo.",
    },
    "group": {
        "en": "Hi! For your privacy, please message me directly, not in a group: tap my name "
              "and then Message.",
        "es": "¡Hola! Por su privacidad, escríbame en privado, no en un grupo: toque mi nombre "
              "y luego Mensaje.",
    },
    "late": {
        "en": "Sorry, your last answer took us longer than it should. Here is where you are.",
        "es": "Perdone, su última respuesta tardó más de la cuenta. Aquí es donde va.",
    },
    "error": {
        "en": "Sorry, something went wrong on our side. Please try again.",
        "es": "Perdone, algo falló de nuestro lado. Inténtelo de nuevo.",
    },
    "unknown_command": {
        "en": "Sorry, I don't know that command. Try /help.",
        "es": "Perdone, no conozco esa orden. Pruebe /help.",
    },
    "help": {
        "en": "I ask a few short questions about your back pain and tell you where to get "
              "care. I can't diagnose you.\n\n"
              "Tap a button or type your answer.\n"
              "/back — change your last answer\n"
              "/restart — start again\n"
              "/language — English or Spanish\n"
              "/privacy — what I keep and why\n"
              "/forget — delete your answers\n\n"
              "If this is an emergency, call 911.",
        "es": "Le hago unas preguntas cortas sobre su dolor de espalda y le digo dónde "
              "atenderse. No puedo darle un diagnóstico.\n\n"
              "Toque un botón o escriba su respuesta.\n"
              "/back — cambiar su última respuesta\n"
              "/restart — empezar de nuevo\n"
              "/language — inglés o español\n"
              "/privacy — qué guardo y por qué\n"
              "/forget — borrar sus respuestas\n\n"
              "Si es una emergencia, llame al 911.",
    },
    "privacy": {
        "en": "What I keep: your answers to these questions, the advice you got, and the time. "
              "Why: so you can continue later, and so the clinic can check the advice is "
              "safe. Your answers are kept for {session_days} days after your last message. "
              "The clinic keeps a record without your name or chat for {audit_days} days to "
              "check quality. If you ask for an appointment, the clinic gets your answers and "
              "phone number to call you back. Nothing is sold or shared "
              "with anyone else.\n\nTo delete your answers now, send /forget.",
        "es": "Qué guardo: sus respuestas a estas preguntas, el consejo que recibió y la hora. "
              "Para qué: para que pueda seguir después y para que la clínica revise que el "
              "consejo es seguro. Sus respuestas se guardan {session_days} días después de su "
              "último mensaje. La clínica guarda un registro sin su nombre ni su chat durante "
              "{audit_days} días para revisar la calidad. Si pide una cita, la clínica recibe "
              "sus respuestas y su teléfono para llamarle. No se vende ni se "
              "comparte con nadie más.\n\nPara borrar sus respuestas ahora, envíe /forget.",
    },
    "forget_confirm": {
        "en": "Delete your answers and everything I keep about you? This cannot be undone.",
        "es": "¿Borrar sus respuestas y todo lo que guardo sobre usted? No se puede deshacer.",
    },
    "forget_yes": {"en": "Yes, delete everything", "es": "Sí, borrar todo"},
    "forget_no": {"en": "No, keep it", "es": "No, conservar"},
    "forgotten": {
        "en": "Done. Your answers and records are deleted. Send /start if you want to begin "
              "again.",
        "es": "Listo. Sus respuestas y registros se borraron. Envíe /start si quiere empezar "
              "de nuevo.",
    },
    "kept": {"en": "OK, nothing was deleted.", "es": "De acuerdo, no se borró nada."},
    "choose_language": {"en": "Choose your language:", "es": "Elija su idioma:"},
    "language_set": {"en": "Language: English.", "es": "Idioma: español."},
    "not_admin": {
        "en": "Sorry, I don't know that command. Try /help.",
        "es": "Perdone, no conozco esa orden. Pruebe /help.",
    },
}

COMMANDS: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("start", "Start the back pain check"),
        ("back", "Change your last answer"),
        ("restart", "Start again"),
        ("help", "How this works"),
        ("language", "English or Spanish"),
        ("privacy", "What is kept and why"),
        ("forget", "Delete your answers"),
    ],
    "es": [
        ("start", "Empezar la revisión del dolor de espalda"),
        ("back", "Cambiar su última respuesta"),
        ("restart", "Empezar de nuevo"),
        ("help", "Cómo funciona"),
        ("language", "Inglés o español"),
        ("privacy", "Qué se guarda y por qué"),
        ("forget", "Borrar sus respuestas"),
    ],
}


def t(key: str, lang: str) -> str:
    texts = TEXTS[key]
    return texts.get(lang) or texts["en"]
