"""Proposing: the endpoint client, the prompts, reply parsing and the policies that produce the next candidate."""
