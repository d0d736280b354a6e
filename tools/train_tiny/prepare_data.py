#!/usr/bin/env python3
"""Prepare the King James Bible text (Debian package bible-kjv-text) for tools/train_tiny/train.py.

Reads the installed text through the package's own reader (`bible`, package bible-kjv, a dependency
of bible-kjv-text; the data file /usr/lib/bible.data is compressed), strips the verse references,
and writes a deterministic chapter-level split:

    OUT/train.txt  OUT/valid.txt  OUT/test.txt  OUT/meta.json

Text layout of every split file (UTF-8, LF line ends): chapters in canonical order, each chapter is
a header line "<Book> <chapter>" followed by one verse per line (verse numbers removed), and
chapters are separated by one empty line. The file ends with a single LF.

Split: chapters are numbered 0..1188 over the whole Bible in canonical order; chapter g goes to
valid if g % 20 == 7, to test if g % 20 == 17, otherwise to train (90/5/5, spread over all books).

Usage: python3 tools/train_tiny/prepare_data.py [--out .train_data/kjv]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

# Abbreviations printed by `bible -f` (bible-kjv 4.38), in canonical order, with KJV book names.
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"), ("Neh", "Nehemiah"),
    ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"),
    ("Jer", "Jeremiah"), ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"),
    ("Hos", "Hosea"), ("Joel", "Joel"), ("Amos", "Amos"), ("Obad", "Obadiah"),
    ("Jonah", "Jonah"), ("Mic", "Micah"), ("Nahum", "Nahum"), ("Hab", "Habakkuk"),
    ("Zep", "Zephaniah"), ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"),
    ("Mat", "Matthew"), ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"),
    ("Gal", "Galatians"), ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"),
    ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"), ("Heb", "Hebrews"),
    ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"), ("1Jn", "1 John"),
    ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]
ABBREV = {a: n for a, n in BOOKS}
EXPECTED_VERSES = 31102
EXPECTED_CHAPTERS = 1189
SPLIT_MOD, VALID_REM, TEST_REM = 20, 7, 17
VERSE_RE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def die(msg, hint):
    sys.stderr.write(f"prepare_data: error: {msg}\nhint: {hint}\n")
    sys.exit(1)


def package_version(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                             text=True, check=True).stdout.strip()
        return out or None
    except (OSError, subprocess.CalledProcessError):
        return None


def read_bible():
    exe = shutil.which("bible")
    if exe is None:
        die("the program 'bible' (package bible-kjv) is not installed",
            "apt-get install -y bible-kjv-text   (it pulls in bible-kjv, which provides the reader)")
    proc = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True)
    if proc.returncode != 0:
        die(f"'bible -f Gen1:1-Rev22:21' exited with {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()}",
            "check that /usr/lib/bible.data exists (dpkg -L bible-kjv-text)")
    return proc.stdout


def parse(raw):
    """Returns a list of chapters: (book name, chapter number, [verse text, ...])."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        die(f"reader output has a non-ASCII byte at offset {e.start}",
            "this script expects the bible-kjv 4.38 plain-ASCII text")
    chapters = []
    nverses = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        m = VERSE_RE.match(line)
        if not m:
            die(f"reader output line {lineno}: cannot parse verse reference in {line[:60]!r}",
                "expected 'Book<chapter>:<verse> text' as printed by `bible -f`")
        abbrev, chap, verse, body = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if abbrev not in ABBREV:
            die(f"reader output line {lineno}: unknown book abbreviation {abbrev!r}",
                "update BOOKS in tools/train_tiny/prepare_data.py for this bible-kjv version")
        book = ABBREV[abbrev]
        body = " ".join(body.split())  # collapse double spaces, drop trailing blanks
        if not chapters or chapters[-1][0] != book or chapters[-1][1] != chap:
            if verse != 1:
                die(f"reader output line {lineno}: {book} {chap} starts at verse {verse}",
                    "the dump must be complete and in canonical order")
            chapters.append((book, chap, []))
        elif verse != len(chapters[-1][2]) + 1:
            die(f"reader output line {lineno}: {book} {chap}:{verse} out of order",
                "the dump must be complete and in canonical order")
        chapters[-1][2].append(body)
        nverses += 1
    if nverses != EXPECTED_VERSES or len(chapters) != EXPECTED_CHAPTERS:
        die(f"got {nverses} verses in {len(chapters)} chapters, expected "
            f"{EXPECTED_VERSES} in {EXPECTED_CHAPTERS}",
            "the installed bible-kjv-text is not the complete KJV text")
    return chapters


def render(chapters):
    return "\n".join(f"{book} {chap}\n" + "\n".join(verses) + "\n"
                     for book, chap, verses in chapters)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".train_data/kjv", help="output folder (default %(default)s)")
    args = ap.parse_args()

    raw = read_bible()
    chapters = parse(raw)
    splits = {"train": [], "valid": [], "test": []}
    for g, ch in enumerate(chapters):
        r = g % SPLIT_MOD
        splits["valid" if r == VALID_REM else "test" if r == TEST_REM else "train"].append(ch)

    os.makedirs(args.out, exist_ok=True)
    meta = {
        "source": {
            "package": "bible-kjv-text",
            "package_version": package_version("bible-kjv-text"),
            "reader_package": "bible-kjv",
            "reader_version": package_version("bible-kjv"),
            "data_file": "/usr/lib/bible.data",
            "command": "bible -f Gen1:1-Rev22:21",
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
            "text": "King James Version (Authorized Version, 1611)",
            "licence": "public domain (see /usr/share/doc/bible-kjv-text/copyright: the copyright "
                       "of the 1611 KJV text has expired; the packaging's compressed data file "
                       "may be copied, modified and distributed at will). Note: in the United "
                       "Kingdom the KJV remains under Crown letters patent.",
        },
        "format": "chapter = header line '<Book> <n>' + one verse per line (numbers removed); "
                  "chapters separated by one empty line; UTF-8 (pure ASCII), LF",
        "split": f"chapters numbered 0..{EXPECTED_CHAPTERS - 1} in canonical order; "
                 f"g % {SPLIT_MOD} == {VALID_REM} -> valid, g % {SPLIT_MOD} == {TEST_REM} -> test, "
                 "else train",
        "files": {},
    }
    for name, chs in splits.items():
        text = render(chs)
        data = text.encode("utf-8")
        path = os.path.join(args.out, f"{name}.txt")
        with open(path, "wb") as f:
            f.write(data)
        meta["files"][f"{name}.txt"] = {
            "chapters": len(chs),
            "verses": sum(len(v) for _, _, v in chs),
            "words": len(text.split()),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "first": f"{chs[0][0]} {chs[0][1]}",
        }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    for name, info in meta["files"].items():
        print(f"{args.out}/{name}: {info['chapters']} chapters, {info['verses']} verses, "
              f"{info['words']} words, {info['bytes']} bytes, sha256 {info['sha256'][:16]}")


if __name__ == "__main__":
    main()
