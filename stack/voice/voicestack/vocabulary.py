"""The vocabulary hint the agent sends with every Whisper request (``WHISPER_PROMPT``).

No imports: ``bench/mishearing.py`` reads it to ask the stack's Whisper exactly as the agent
does.

Whisper ``tiny.en`` given no hint hears espeak-ng's "nine" as "I" now and then ("What is i
minus 4?"). The hint writes the questions the agent answers with their numbers in digits, so
the decoder expects numbers after "What is" and around the operation words.
"""

DEFAULT_STT_PROMPT = (
    "What is 4 plus 9? What is 60 divided by 12? What is 13 times 7 minus 8? "
    "What time is it? What is the capital of France?"
)
