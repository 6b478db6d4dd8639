"""Staff tools: a picture of the flow, what an edit changes, the funnel, live reload."""
