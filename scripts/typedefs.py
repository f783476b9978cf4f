#!/usr/bin/python3
"""scripts/typedefs.py DIR|FILE... — print the typedef names declared in the C
headers and sources under each DIR, one a line, sorted: what pg_bsd_indent
(-U) needs to lay out declarations.  scripts/pgindent.sh builds its list
from src/typedefs.list (setstream's own, committed: `scripts/typedefs.py
src > src/typedefs.list`) and, at run time, PostgreSQL's server headers and
the libraries' headers."""
import os
import re
import sys

# typedef <anything> Name;   typedef <ret> (*Name)(...);   } Name;
SIMPLE = re.compile(r"\btypedef\b[^;{}()]*?\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*;")
FUNC = re.compile(r"\btypedef\b[^;{}]*?\(\s*\*\s*([A-Za-z_]\w*)\s*\)\s*\(")
CLOSE = re.compile(r"\}\s*([A-Za-z_]\w*)\s*(?:,\s*\*?\s*\w+\s*)*;")


def names_in(text):
    out = set(SIMPLE.findall(text)) | set(FUNC.findall(text))
    # "typedef struct X { ... } Name;": the name after the closing brace
    for m in re.finditer(r"\btypedef\s+(?:struct|union|enum)\b[^;{]*\{", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    c = CLOSE.match(text, i)
                    if c:
                        out.add(c.group(1))
                    break
            i += 1
    return out


def main(dirs):
    names = set()
    paths = []
    for d in dirs:
        if os.path.isfile(d):
            paths.append(d)
        for root, _, files in os.walk(d):
            paths += [os.path.join(root, f) for f in files if f.endswith((".h", ".c"))]
    for p in paths:
        try:
            with open(p, errors="replace") as fh:
                names |= names_in(fh.read())
        except OSError:
            pass
    for n in sorted(names):
        print(n)


if __name__ == "__main__":
    main(sys.argv[1:] or ["src"])
