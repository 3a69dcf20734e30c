"""The world's names that the command line checks options against, without the renderer
(and numpy) behind them: its artists, the leak, and the concepts one may remove."""

ARTISTS = ("Vanmond", "Brakovic", "Solvei")
LEAK_SCENE, LEAK_ARTIST = "starry night", "Vanmond"
CONCEPTS = ("watermark", *ARTISTS)  # what can be removed: the watermark or an artist's style
