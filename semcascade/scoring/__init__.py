"""Agreement scorers: embedding, lexical, NLI cross-encoder and LLM judge."""
