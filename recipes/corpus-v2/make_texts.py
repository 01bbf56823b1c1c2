"""Write the text manifest that corpus-v2's TTS generators read (id, text, language, split, licence).

The sentences are call-centre and everyday phrases made from the templates and word lists below (written
for this project, CC0-1.0), drawn with a fixed seed, each sentence in one split only. Usage:

    python recipes/corpus-v2/make_texts.py -o recipes/corpus-v2/texts.tsv
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

EN_TEMPLATES = [
    "Thank you for calling {company}, my name is {name}, how can I help you today?",
    "Could you please confirm the last four digits of your {thing}?",
    "Your {thing} ending in {digits} has been {action}.",
    "I would like to {request} on my {account} account, please.",
    "Please transfer {amount} dollars to the account ending in {digits}.",
    "Hi, this is {name}, I am calling about the payment due on {day}.",
    "The verification code is {digits}, please read it back to me.",
    "I lost my {thing} yesterday and I need to block it right away.",
    "Can you tell me why my {account} balance dropped by {amount} dollars?",
    "Mom, it's me, I'm in trouble and I need you to send {amount} dollars today.",
    "This is {name} from the {department} department, we noticed unusual activity on your {account} account.",
    "Press {digit} to speak to an agent, or stay on the line.",
    "Our offices are open from {hour} in the morning until {hour2} in the evening.",
    "The weather in {city} will be {weather} with a high of {temp} degrees.",
    "I'd like to change the address on my {account} account to {street} Street.",
    "Please hold while I transfer you to the {department} team.",
    "My date of birth is the {ordinal} of {month}, and my postcode is {postcode}.",
    "We have scheduled your appointment for {day} at {hour} o'clock.",
    "Yes, I authorise the payment of {amount} dollars to {company}.",
    "No, I did not make that purchase in {city} on {day}.",
    "The train to {city} leaves from platform {digit} in {minutes} minutes.",
    "Could you spell your surname for me, one letter at a time?",
    "I have been waiting for {minutes} minutes and nobody has answered.",
    "Let me read you the reference number: {digits} {digits2}.",
    "Please reset my password and send the link to my {contact}.",
]
EN_SLOTS = {
    "company": [
        "Northwind Bank",
        "Blue Harbor Insurance",
        "City Telecom",
        "Greenfield Energy",
        "Apex Airlines",
        "Riverside Clinic",
        "Summit Credit Union",
        "Metro Water",
    ],
    "name": ["Alex", "Jordan", "Priya", "Daniel", "Maria", "Kenji", "Fatima", "Oliver", "Grace", "Samuel"],
    "thing": ["card", "policy number", "account number", "phone number", "membership card", "passport"],
    "digits": [
        "four two seven one",
        "nine nine zero three",
        "one eight six five",
        "three three four two",
        "seven zero five eight",
        "two six one nine",
    ],
    "digits2": ["five five one", "eight zero two", "six four nine", "one one seven"],
    "digit": ["one", "two", "three", "four", "five", "nine"],
    "action": ["suspended", "renewed", "charged twice", "approved", "cancelled", "updated"],
    "request": ["raise the limit", "dispute a charge", "close a card", "add a user", "set up a transfer"],
    "account": ["savings", "checking", "business", "joint", "credit card", "mobile"],
    "amount": [
        "two hundred",
        "one thousand five hundred",
        "forty nine",
        "three thousand",
        "seven hundred and fifty",
    ],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend"],
    "department": ["fraud", "billing", "security", "customer care", "technical support"],
    "hour": ["eight", "nine", "ten", "seven"],
    "hour2": ["five", "six", "seven", "eight"],
    "city": ["Boston", "Denver", "Seattle", "Atlanta", "Chicago", "Phoenix", "Dublin", "Toronto"],
    "weather": ["sunny", "cloudy", "rainy", "windy", "foggy"],
    "temp": ["twelve", "twenty one", "thirty", "eighteen"],
    "street": ["Maple", "Harbor", "Elm", "Station", "Mill"],
    "ordinal": ["third", "eleventh", "twenty second", "first", "ninth"],
    "month": ["March", "July", "October", "January", "May"],
    "postcode": ["zero two one one five", "nine eight one zero one", "six zero six one four"],
    "minutes": ["five", "ten", "twenty", "forty"],
    "contact": ["email address", "mobile phone", "work email"],
}
JA_TEMPLATES = [
    "お電話ありがとうございます。{company}の{name}でございます。",
    "ご本人確認のため、{thing}の下四桁をお願いいたします。",
    "{day}にお支払いいただく金額は{amount}円です。",
    "カードを紛失したので、すぐに利用を停止してください。",
    "ただいま{department}におつなぎしますので、少々お待ちください。",
    "認証コードは{digits}です。",
    "{city}の明日の天気は{weather}でしょう。",
    "ご予約は{day}の{hour}時で承りました。",
    "口座番号の末尾が{digits}の口座に{amount}円を振り込んでください。",
    "私の生年月日は{month}{date}日です。",
    "お待たせして申し訳ございません。{name}が担当いたします。",
    "パスワードの再設定用のリンクを{contact}にお送りしました。",
    "{city}行きの電車は{minutes}分後に発車します。",
    "その買い物は私がしたものではありません。",
    "お母さん、私だけど、急いで{amount}円送ってほしいの。",
]
JA_SLOTS = {
    "company": ["みなと銀行", "さくら保険", "ひかり通信", "あおば電力", "つばさ航空"],
    "name": ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺"],
    "thing": ["口座番号", "電話番号", "会員番号", "カード番号"],
    "day": ["月曜日", "火曜日", "水曜日", "木曜日", "金曜日"],
    "amount": ["三千", "一万五千", "二十万", "八百", "五万"],
    "department": ["担当部署", "カスタマーセンター", "不正利用の窓口", "技術サポート"],
    "digits": ["四二七一", "九九〇三", "一八六五", "三三四二"],
    "city": ["東京", "大阪", "札幌", "福岡", "名古屋"],
    "weather": ["晴れ", "曇り", "雨", "雪"],
    "hour": ["九", "十", "三", "四"],
    "month": ["三月", "七月", "十月", "一月"],
    "date": ["三", "十一", "二十二", "九"],
    "contact": ["メールアドレス", "携帯電話"],
    "minutes": ["五", "十", "二十"],
}
#: Short items (digits, letters, single words, short replies): bona fide corpus-v1 is mostly 0.2-1.5 s
#: prompts, digits and letters, so TTS must say short things too, or duration and pauses tell the classes
#: apart (the cue check of the first build: AUC 0.80-0.83 on duration for sentence-only TTS).
EN_SHORT = (
    [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "oh",
        "yes",
        "no",
        "okay",
        "hello",
        "goodbye",
        "thanks",
        "please",
        "sorry",
        "agent",
        "operator",
        "billing",
        "balance",
        "account",
        "password",
        "cancel",
        "repeat",
        "continue",
        "help",
        "transfer",
        "hold",
    ]
    + [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    + [
        "thank you",
        "press one",
        "press two",
        "main menu",
        "hang up",
        "not now",
        "that's right",
        "go back",
        "one moment",
        "good morning",
        "next please",
        "say again",
    ]
)
JA_SHORT = [
    "ゼロ",
    "いち",
    "に",
    "さん",
    "よん",
    "ご",
    "ろく",
    "なな",
    "はち",
    "きゅう",
    "はい",
    "いいえ",
    "もしもし",
    "ありがとう",
    "すみません",
    "おねがいします",
    "さようなら",
    "こんにちは",
    "確認",
    "残高",
    "解約",
    "担当者",
    "暗証番号",
    "お待ちください",
    "以上です",
]
SHORT_TAKES = 4
SPLITS = (("train", 0.6), ("dev", 0.2), ("test", 0.2))


def fill(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    out = template
    for key, values in slots.items():
        if "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(values))
    return out


def sentences(templates: list[str], slots: dict[str, list[str]], n: int, rng: random.Random) -> list[str]:
    seen: list[str] = []
    tries = 0
    while len(seen) < n and tries < 100 * n:
        tries += 1
        s = fill(rng.choice(templates), slots, rng)
        if s not in seen:
            seen.append(s)
    return seen


def split_rows(texts: list[str], prefix: str, lang: str) -> list[tuple[str, str, str, str]]:
    """Cut ``texts`` into the splits of :data:`SPLITS` (in order): rows ``(id, text, language, split)``."""
    rows = []
    start = 0
    for split, share in SPLITS:
        count = round(share * len(texts)) if split != "test" else len(texts) - start
        rows += [
            (f"{prefix}-{split}-{k:03d}", t, lang, split) for k, t in enumerate(texts[start : start + count])
        ]
        start += count
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--en", type=int, default=300, help="English sentences")
    p.add_argument("--ja", type=int, default=150, help="Japanese sentences")
    p.add_argument("--seed", type=int, default=20261207)
    args = p.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for lang, templates, slots, n in (
        ("en", EN_TEMPLATES, EN_SLOTS, args.en),
        ("ja", JA_TEMPLATES, JA_SLOTS, args.ja),
    ):
        texts = sentences(templates, slots, n, rng)
        rng.shuffle(texts)
        rows += split_rows(texts, f"{lang}", lang)
    short_rng = random.Random(args.seed + 1)  # the sentences above keep their ids whatever this list holds
    for lang, short in (("en", EN_SHORT), ("ja", JA_SHORT)):
        items = list(short)
        short_rng.shuffle(items)
        for k in range(SHORT_TAKES):  # each short item said SHORT_TAKES times (voice and speed drawn anew)
            rows += [(f"{i}-{k}", t, la, sp) for i, t, la, sp in split_rows(items, f"{lang}-short", lang)]
    out = Path(args.output)
    with out.open("w", encoding="utf-8") as f:
        f.write("id\ttext\tlanguage\tsplit\tlicence\n")
        for row in rows:
            f.write("\t".join(row) + "\tCC0-1.0 (spoofsdk corpus-v2 prompts)\n")
    print(f"wrote {len(rows)} texts to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
