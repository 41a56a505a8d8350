"""The vocabulary hint the agent sends with every Whisper request (``WHISPER_PROMPT``).

No imports: ``bench/mishearing.py`` reads it to ask the stack's Whisper exactly as the agent
does.

Whisper ``tiny.en`` hears espeak-ng's "nine" after "What is" as "i" now and then ("What is i
minus 4?"). The hint writes questions like the ones the agent answers, numbers in digits,
each of 2 to 12 once as the first operand, so the decoder expects a number after "What is"
without favouring one (a hint with "What is 9 plus 5?" turned "five plus" into "9 plus").
``bench/mishearing.py`` measures the effect (rates in ``probes/README.md``).
"""

DEFAULT_STT_PROMPT = (
    "What is 2 plus 9? What is 3 minus 2? What is 4 times 5? What is 5 plus 7? "
    "What is 6 minus 4? What is 7 times 3? What is 8 plus 6? What is 9 minus 5? "
    "What is 10 times 8? What is 11 plus 12? What is 12 minus 10? What is 60 divided by 12? "
    "What time is it? What is the capital of France?"
)
