"""Rating classroom transcripts with foundation models: prompts, backends, parsing, runs."""
