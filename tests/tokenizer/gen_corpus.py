#!/usr/bin/env python3
"""Builds the tokenizer parity corpus and its expected outputs.

    python3 tests/tokenizer/gen_corpus.py            # (re)write corpus + expectations
    python3 tests/tokenizer/gen_corpus.py --check    # recompute with HF tokenizers, compare, exit 1 on a difference

Outputs (committed, in tests/tokenizer/):
  corpus.txt            one case per line, raw bytes ('\\n' separates cases; lines may
                        hold '\\r', and some hold invalid UTF-8 on purpose)
  qwen3_expected.txt    HF ids for every line, then for every block of BLOCK consecutive
                        lines joined with '\\n' plus a final '\\n' (these cover CRLF and
                        newline runs); one case per line, ids separated by spaces
  qwen3_nfc.txt         NFC(text) per line (Python unicodedata), where text is the line
                        decoded with errors="replace"; the C test checks
                        decode(encode(line)) == this line
  qwen3_decode.txt      "flags<TAB>ids<TAB>hex(utf-8)" : HF decode of id sequences that
                        spell ill-formed UTF-8 (byte tokens), with and without
                        skip_special_tokens; checks U+FFFD placement

Invalid UTF-8 model: HF's Python API only takes str, so a line of bytes is given to HF as
bytes.decode("utf-8", errors="replace") — each maximal ill-formed subpart becomes one
U+FFFD. strata's encoder repairs its input the same way (st_utf8_lossy), so the ids must
match. The corpus is generated from a fixed seed: re-running gives identical files.
"""
import argparse
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "qwen3", "tokenizer.json")
BLOCK = 7

EN_WORDS = """the of and to in is that it was for on are as with his they at be this from have or by one
had not but what all were when we there can an your which their said if do will each about how up out
them then she many some so these would other into has more her two like him see time could no make than
first been its who now people my made over did down only way find use may water long little very after
words called just where most know get through back much before go good new write our used me man too any
day same right look think also around another came come work three word must because does part even
place well such here take why things help put years different away again off went old number great tell
men say small every found still between name should home big give air line set own under read last never
us left end along while might next sound below saw something thought both few those always looked show
large often together asked house don't world going want school important until form food keep children
feet land side without boy once animals life enough took sometimes four head above kind began almost
live page got earth need far hand high year mother light parts country father let night following
picture being study second eyes soon times story boys since white days ever paper hard near sentence
better best across during today others however sure means knew it's try told young miles sun ways thing
whole hear example heard several change answer room sea against top turned learn point city play toward
five using himself usually money seen didn't car morning I'm body upon family later turn move face door
cut done group true leave color red friends pulled strange problem complete rain Transformer GPU CUDA
tokenizer encoder decoder attention latency throughput bandwidth kernel tensor gradient inference""".split()

ZH = ("我们的你是在有了不这个人中大为上一国和地到以说时要就出会可也学对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法"
      "学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将"
      "两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比"
      "员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保")
ZH_PUNCT = "，。！？；：、“”‘’（）《》【】…—·"
JA_HIRA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽゃゅょっ"
JA_KATA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポャュョッー"
JA_KANJI = "日本語東京大阪学校先生時間電車会社仕事天気今日明日友達音楽映画料理写真旅行世界言葉漢字勉強経済政治技術開発研究"
JA_HALF = "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾞﾟｰ"
KO_WORDS = ["안녕하세요", "감사합니다", "한국어", "토크나이저", "서울", "사랑", "컴퓨터", "프로그램", "학교", "친구",
            "오늘", "날씨", "좋아요", "모델", "데이터", "가나다라", "만나서", "반갑습니다", "괜찮아요", "그래서"]
AR_WORDS = ["مرحبا", "العالم", "اللغة", "العربية", "كتاب", "مدرسة", "السلام", "عليكم", "شكرا", "جزيلا",
            "بِسْمِ", "ٱللَّٰهِ", "مُحَمَّد", "الرَّحْمَٰنِ", "الرَّحِيمِ", "نموذج", "بيانات", "حاسوب", "تعلّم", "آلة"]
OTHER = ["Привет мир", "Здравствуйте, как дела?", "Γειά σου Κόσμε", "ελληνικά γράμματα", "สวัสดีครับ", "ภาษาไทย",
         "नमस्ते दुनिया", "हिन्दी भाषा", "שלום עולם", "Xin chào thế giới", "Tiếng Việt có dấu", "Ça va très bien",
         "Zürich Straße Größe", "ŁÓDŹ żółć", "ქართული", "Հայերեն", "አማርኛ", "ᠮᠣᠩᠭᠣᠯ", "ไม่มีปัญหา", "தமிழ்"]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "👋🏿", "❤️", "🔥", "✨", "🎉", "🚀", "🤖", "🧠", "🐍", "🦀", "☕", "⭐",
         "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏻‍🔬", "🏳️‍🌈", "🏴‍☠️", "👁️‍🗨️", "❤️‍🔥", "🇯🇵", "🇺🇸", "🇨🇳", "🇩🇪", "1️⃣", "#️⃣",
         "©️", "™", "☺︎", "✌🏼", "🫠", "🫶🏾", "👩🏽‍❤️‍💋‍👨🏻", "🧔‍♀️", "🤷‍♂️", "🙇🏻‍♀️"]
CODE = [
    "def main(argv: list[str]) -> int:", "    return 0", "\tif (x == NULL) { return -1; }", "for (int i = 0; i < n; ++i) {",
    "    printf(\"%d\\n\", a[i]);", "}", "#include <stdio.h>", "import numpy as np", "x = np.zeros((3, 4), dtype=np.float32)",
    "const f = async (a, b) => { await g(a ?? b); };", "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}", "$ cmake -S . -B build -G Ninja && ninja -C build",
    "fn main() { println!(\"hello {}\", 42); }", "if __name__ == \"__main__\":", "        self.assertEqual(a, b)  # TODO",
    "    let v: Vec<u8> = Vec::with_capacity(1 << 20);", "<div class=\"container\"><span>text</span></div>",
    "x+=1;y-=2;z*=3;w/=4;", "a->b.c[0] = (uint8_t)(v >> 8) & 0xFF;", "std::vector<std::string> names{\"a\", \"b\"};",
    "    // comment with trailing spaces   ", "\t\t\tdeeply(nested(call()));", "lambda x: x**2 if x else -x",
    "git commit -m 'fix: handle CRLF'", "MAX_SIZE = 1_000_000", "0x7fffffff 0b1010 0o755 1e-9 3.14159f",
    "@decorator(arg=1)", "elif x != y and not z:", "    } else if (strcmp(s, \"--help\") == 0) {",
]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
            "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|vision_start|>", "<|image_pad|>",
            "<tool_response>", "<|repo_name|>", "<|file_sep|>", "<|box_start|>"]
NEAR_SPECIALS = ["<|im_start", "im_end|>", "<|im_end |>", "< |endoftext|>", "<think", "<<|im_end|>>",
                 "<|IM_START|>", "</think >", "<|endoftext|", "|>", "<|", "<|im_start|im_end|>"]
WS = [" ", "  ", "   ", "    ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f", "\u180e",
      "\u0085", "\u200b", "\u2028", "\u1680", "\u205f", "\r", " \r", "\x0b", "\x0c", "\u00a0\u00a0"]
NUMS = ["0", "7", "42", "123", "1234", "12345", "3.14159", "-273.15", "1,234,567", "6.022e23", "1e-9", "+1 (555) 010-9999",
        "2024-01-31", "12:30:45", "１２３４", "٠١٢٣٤٥", "०१२३", "½", "¾", "²³", "Ⅻ", "ⅷ", "①②③", "10%", "$99.99", "€5,00",
        "0.000001", "999999999999", "3/4", "v1.2.3", "192.168.0.1", "#1", "№5", "٣٫١٤"]
# NFC-relevant: decomposed forms, compatibility ideographs, Angstrom/Ohm/Kelvin signs, long s
NFC_CASES = ["e\u0301cole", "cafe\u0301", "A\u030angstro\u0308m", "\u212bngstr\u00f6m", "\u2126 and \u212a",
             "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af", "\u304b\u3099", "\u30cf\u309a",
             "\uf900\uf901\uf902", "\u0041\u0308\u0304", "o\u0302\u0323", "\u1e9b\u0323", "it\u017fs", "it'\u017f",
             "Ω", "ﬁ ligature", "ｶﾞｷﾞ", "\u0915\u093c", "\u00c5\u030a"]
INVALID = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe2\x82", b"\xe2", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe\xff", b"\xf0\x9f\x98", b"\xf0\x9f",
           b"\xe0\x80\xaf", b"\xe0\xa0", b"\xf0\x80\x80\x80", b"\xc3", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1",
           b"\xf0\x28\x8c\xbc", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]


def en_sentence(r):
    n = r.randint(3, 16)
    words = [r.choice(EN_WORDS) for _ in range(n)]
    if r.random() < 0.3:
        words[0] = words[0].capitalize()
    if r.random() < 0.2:
        i = r.randrange(n)
        words[i] = words[i].upper()
    s = " ".join(words)
    for c in (",", ";", " -", ":"):
        if r.random() < 0.2:
            i = r.randrange(len(s))
            j = s.find(" ", i)
            if j > 0:
                s = s[:j] + c + s[j:]
    if r.random() < 0.3:
        s += r.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re"])
    if r.random() < 0.15:
        s = '"' + s + '"'
    return s + r.choice([".", "!", "?", "...", "", "?!", " :)", "."])


def zh_sentence(r):
    parts = []
    for _ in range(r.randint(1, 4)):
        parts.append("".join(r.choice(ZH) for _ in range(r.randint(2, 14))))
        parts.append(r.choice(ZH_PUNCT))
    return "".join(parts)


def ja_sentence(r):
    out = []
    for _ in range(r.randint(2, 8)):
        pool = r.choice([JA_HIRA, JA_KATA, JA_KANJI, JA_HIRA, JA_HALF if r.random() < 0.2 else JA_KANJI])
        out.append("".join(r.choice(pool) for _ in range(r.randint(1, 6))))
    return "".join(out) + r.choice(["。", "、", "！", "？", "", "」", "「"])


def ko_sentence(r):
    return " ".join(r.choice(KO_WORDS) for _ in range(r.randint(1, 7))) + r.choice([".", "?", "!", ""])


def ar_sentence(r):
    s = " ".join(r.choice(AR_WORDS) for _ in range(r.randint(1, 8)))
    if r.random() < 0.3:
        s += " " + r.choice(["٢٠٢٤", "١٢٣", "3", "؟", "،"])
    if r.random() < 0.2:
        s = "\u200f" + s
    return s


def emoji_line(r):
    parts = []
    for _ in range(r.randint(1, 6)):
        parts.append(r.choice(EMOJI))
        if r.random() < 0.5:
            parts.append(r.choice([" ", "", " " + r.choice(EN_WORDS) + " ", "!"]))
    return "".join(parts)


def numbers_line(r):
    k = r.randint(1, 6)
    out = []
    for _ in range(k):
        out.append(r.choice(NUMS) if r.random() < 0.6 else str(r.randint(0, 10 ** r.randint(1, 12))))
        out.append(r.choice([" ", ", ", " + ", "x", "", " = ", "-", "\t"]))
    return "".join(out).rstrip(" ")


def ws_line(r):
    out = []
    for _ in range(r.randint(1, 6)):
        out.append(r.choice(WS) * r.randint(1, 3))
        if r.random() < 0.7:
            out.append(r.choice(EN_WORDS + ["x", "1", "，", "é", "日本"]))
    return "".join(out)


def crlf_line(r):
    base = r.choice([en_sentence, code_line, zh_sentence])(r)
    k = r.random()
    if k < 0.5:
        return base + "\r"
    if k < 0.7:
        return base + " \r"
    if k < 0.85:
        return base.replace(" ", "\r", 1)
    return "\r" * r.randint(1, 3) + base + "\r"


def code_line(r):
    s = r.choice(CODE)
    if r.random() < 0.3:
        s = r.choice(["    ", "\t", "        ", "  "]) + s
    return s


def mixed_line(r):
    gens = [en_sentence, zh_sentence, ja_sentence, ko_sentence, ar_sentence, emoji_line, numbers_line]
    parts = [r.choice(gens)(r) for _ in range(r.randint(2, 4))]
    if r.random() < 0.4:
        parts.append(r.choice(OTHER))
    if r.random() < 0.4:
        parts.append(r.choice(NFC_CASES))
    r.shuffle(parts)
    return r.choice([" ", "", " | ", "\t", "  "]).join(parts)


def special_line(r):
    parts = []
    for _ in range(r.randint(1, 5)):
        x = r.random()
        if x < 0.45:
            parts.append(r.choice(SPECIALS))
        elif x < 0.6:
            parts.append(r.choice(NEAR_SPECIALS))
        else:
            parts.append(r.choice([en_sentence, zh_sentence, code_line])(r)[:40])
    return r.choice(["", " ", "\t"]).join(parts)


def nfc_line(r):
    return r.choice(NFC_CASES) + r.choice(["", " ", " " + en_sentence(r), r.choice(NFC_CASES)])


def invalid_line(r):
    """bytes, not str"""
    parts = []
    for _ in range(r.randint(1, 4)):
        if r.random() < 0.5:
            parts.append(r.choice(INVALID))
        else:
            parts.append(r.choice([en_sentence, zh_sentence, emoji_line, ko_sentence])(r)[:30].encode())
    # a truncated multi-byte sequence at the very end now and then
    if r.random() < 0.3:
        parts.append("é日😀".encode()[: r.choice([1, 3, 4, 6, 8])])
    return b"".join(parts)


def make_corpus():
    r = random.Random(20240531)
    gens = [("en", en_sentence, 260), ("zh", zh_sentence, 180), ("ja", ja_sentence, 150), ("ko", ko_sentence, 130),
            ("ar", ar_sentence, 130), ("other", lambda r: r.choice(OTHER) + r.choice(["", " ", ". " + en_sentence(r)]), 80),
            ("code", code_line, 200), ("emoji", emoji_line, 150), ("num", numbers_line, 150), ("ws", ws_line, 150),
            ("crlf", crlf_line, 120), ("mixed", mixed_line, 200), ("special", special_line, 150), ("nfc", nfc_line, 90),
            ("invalid", invalid_line, 160)]
    lines = []
    for name, g, n in gens:
        for _ in range(n):
            x = g(r)
            b = x if isinstance(x, bytes) else x.encode("utf-8")
            assert b"\n" not in b, (name, x)
            lines.append(b)
    # fixed edge cases
    lines += [b"", b" ", b"  ", b"\t", b"\r", b"a", b"'s", b"'", b"0", b"<|im_start|>", b"<|im_start|><|im_end|>",
              ("x" * 300).encode(), (" " * 200 + "y").encode(), ("\t" * 50).encode(), ("日本" * 120).encode(),
              ("😀" * 60).encode(), ("1234567890" * 20).encode(), ("ab " * 100).encode(), b"\xef\xbb\xbfBOM line",
              ("a\u0301" * 40).encode(), b"\x00\x01\x02 control \x1f\x7f", "\ufffd replacement".encode()]
    r.shuffle(lines)
    return lines


def blocks(lines):
    out = []
    for i in range(0, len(lines), BLOCK):
        out.append(b"\n".join(lines[i:i + BLOCK]) + b"\n")
    return out


def as_text(b):
    return b.decode("utf-8", errors="replace")


def decode_cases(tok, r):
    """id sequences that spell ill-formed UTF-8 (and specials), with HF's decode"""
    vocab = tok.get_vocab()
    byte_ids = []
    # GPT-2 byte alphabet
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = dict(zip(bs, map(chr, cs)))
    for b in range(256):
        byte_ids.append(vocab[b2u[b]])
    multi = [vocab[w] for w in ["Ġthe", "Ġworld", "ä½ł", "ĠðŁĺ", "ðŁ", "Ģ", "æĹ¥"] if w in vocab]
    specials = [151643, 151644, 151645, 151667, 151668]
    cases = []
    for _ in range(400):
        seq = []
        for _ in range(r.randint(1, 8)):
            x = r.random()
            if x < 0.55:
                seq.append(byte_ids[r.choice([r.randrange(0x80, 0x100), r.randrange(0xC0, 0x100), r.randrange(0x20, 0x7F)])])
            elif x < 0.8:
                seq.append(r.choice(multi))
            else:
                seq.append(r.choice(specials))
        for skip in (0, 1):
            cases.append((skip, seq, tok.decode(seq, skip_special_tokens=bool(skip))))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="recompute with HF tokenizers and compare with the committed files")
    args = ap.parse_args()
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers is not installed (pip install tokenizers): skipped", file=sys.stderr)
        return 77
    tok = Tokenizer.from_file(TOKENIZER)
    lines = make_corpus()
    cases = lines + blocks(lines)
    expected = []
    for b in cases:
        expected.append(" ".join(map(str, tok.encode(as_text(b)).ids)))
    nfc = [unicodedata.normalize("NFC", as_text(b)) for b in lines]
    # HF's own round trip must agree with NFC for these lines
    bad = 0
    for b, n in zip(lines, nfc):
        d = tok.decode(tok.encode(as_text(b)).ids, skip_special_tokens=False)
        if d != n:
            bad += 1
            print("note: HF decode(encode(x)) != NFC(x) for %r" % b, file=sys.stderr)
    dec = decode_cases(tok, random.Random(7))
    files = {
        "corpus.txt": b"\n".join(lines) + b"\n",
        "qwen3_expected.txt": ("\n".join(expected) + "\n").encode(),
        "qwen3_nfc.txt": ("\n".join(nfc) + "\n").encode("utf-8"),
        "qwen3_decode.txt": ("".join("%d\t%s\t%s\n" % (s, " ".join(map(str, q)), d.encode().hex()) for s, q, d in dec)).encode(),
    }
    if args.check:
        diff = 0
        for name, data in files.items():
            with open(os.path.join(HERE, name), "rb") as f:
                if f.read() != data:
                    print("MISMATCH: %s differs from what tokenizers %s computes" % (name, __import__("tokenizers").__version__))
                    diff += 1
        print("checked %d lines, %d blocks, %d decode cases: %s" % (len(lines), len(cases) - len(lines), len(dec),
                                                                    "ok" if not diff else "DIFFERENT"))
        return 1 if diff else 0
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print("wrote %d lines, %d blocks, %d decode cases (%d HF round-trip notes)" % (len(lines), len(cases) - len(lines),
                                                                              len(dec), bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
