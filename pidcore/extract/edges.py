"""Knockout edge names (torch-free, so request validation stays light).

edge name -> (key role, query role): information flows from the key positions to the query positions.
`question->image` exists only in prefix-LM families (PaliGemma), where image tokens attend to the prompt.
"""

EDGES = {
    "image->question": ("image", "question"),
    "image->last": ("image", "last"),
    "question->last": ("question", "last"),
    "last->last": ("last", "last"),
    "question->image": ("question", "image"),
}
