"""The OSRS high-score palette: each frame style name -> (foreground, background, attributes).

Gold and green on the terminal's own background, like the game's interface text. Colours are
abstract names (gold, green, red, cyan, white, black); each backend maps them to what its screen
can show (8 colours, 256 colours, or true colour in Textual).
"""

from typing import Tuple

Style = Tuple[str, str, str]  # (foreground, background or "", space-separated attributes)

PALETTE = {
    "border": ("gold", "", ""),
    "title": ("gold", "", "bold"),
    "meta": ("green", "", ""),
    "skill": ("gold", "", "bold"),
    "header": ("green", "", "bold"),
    "header_focus": ("black", "green", "bold"),
    "rank": ("gold", "", ""),
    "user": ("white", "", ""),
    "xp": ("green", "", ""),
    "share": ("white", "", ""),
    "main": ("cyan", "", ""),
    "first": ("gold", "", "bold"),
    "cursor": ("black", "gold", "bold"),
    "match": ("white", "", "bold underline"),
    "status": ("green", "", ""),
    "warn": ("red", "", "bold"),
    "keys": ("gold", "", ""),
    "prompt": ("white", "", "bold"),
    "tip": ("cyan", "", ""),
    "empty": ("gold", "", ""),
}  # type: Dict[str, Style]

# 256-colour indexes closer to the game's gold (#ffb000-ish) and green than the 8 basic colours.
XTERM256 = {"gold": 214, "green": 34, "red": 160, "cyan": 44, "white": 255, "black": 16}
BASIC = {"black": 0, "red": 1, "green": 2, "gold": 3, "cyan": 6, "white": 7}
HEX = {
    "gold": "#ffb000",
    "green": "#29c229",
    "red": "#e0302a",
    "cyan": "#3fc6d0",
    "white": "#f2efe6",
    "black": "#1a1405",
}
