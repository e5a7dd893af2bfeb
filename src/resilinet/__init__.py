"""ResiliNet (arXiv 2002.07386): failure-resilient inference over a chain of IoT, edge, fog and cloud nodes."""
