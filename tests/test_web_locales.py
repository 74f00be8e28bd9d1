"""The console's translations (web/src/locales/*.json, vue-i18n message syntax) are complete.

Both languages hold the same keys with the same placeholders; English counted messages hold
their singular and plural forms, Chinese ones a single form; every key the console's code
names exists, and every key is used. (Text written into templates instead of going through
``t()`` is caught by ESLint's ``vue/no-bare-strings-in-template``: ``nox -s lint``.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"
LOCALES = WEB / "src" / "locales"
LANGUAGES = ("en", "zh-CN")

# StateTag renders t(`${kind}.${value}`) for these sections (its `kind` prop).
STATE_TAG_SECTIONS = ("state", "status", "health", "result", "batch", "rollout", "step")

PLACEHOLDER = re.compile(r"\{\s*(\w+)\s*\}")
LITERAL = re.compile(r"\{\s*'[^']*'\s*\}")  # vue-i18n's literal interpolation: {'@'}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            assert isinstance(value, str), f"{path} is not a string"
            flat[path] = value
    return flat


def messages(lang: str) -> dict[str, str]:
    return flatten(json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")))


def forms(message: str) -> list[str]:
    return [form.strip() for form in LITERAL.sub("", message).split("|")]


def placeholders(message: str) -> set[str]:
    return set(PLACEHOLDER.findall(LITERAL.sub("", message)))


def source() -> str:
    files = sorted(WEB.joinpath("src").rglob("*"))
    return "\n".join(f.read_text(encoding="utf-8") for f in files if f.suffix in {".vue", ".js"})


def test_both_languages_have_the_same_keys() -> None:
    en, zh = messages("en"), messages("zh-CN")
    assert sorted(set(en) - set(zh)) == [], "keys missing in zh-CN.json"
    assert sorted(set(zh) - set(en)) == [], "keys missing in en.json"


def test_translations_use_the_same_placeholders() -> None:
    en, zh = messages("en"), messages("zh-CN")
    differ = {
        key: (sorted(placeholders(en[key])), sorted(placeholders(zh[key])))
        for key in en
        if placeholders(en[key]) - {"n"} != placeholders(zh[key]) - {"n"}
    }
    assert differ == {}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_messages_use_only_the_syntax_they_mean(lang: str) -> None:
    # '@' starts a linked message and '|' separates plural forms in vue-i18n: a literal one
    # must be written {'@'}; no message is empty.
    bad = {
        key: text
        for key, text in messages(lang).items()
        if "@" in LITERAL.sub("", text) or not text.strip() or "||" in text
    }
    assert bad == {}


def test_english_counted_messages_have_singular_and_plural() -> None:
    counted = {key: forms(text) for key, text in messages("en").items() if "|" in text}
    assert counted, "no plural messages?"
    assert {key: f for key, f in counted.items() if len(f) != 2 or not all(f)} == {}
    # The plurals this round fixed ("1 modules · 1 instances").
    assert forms(messages("en")["systems.modules_n"]) == ["{n} module", "{n} modules"]
    assert forms(messages("en")["systems.instances_n"]) == ["{n} instance", "{n} instances"]


def test_chinese_messages_have_one_form() -> None:
    # Chinese has no grammatical plural: a counted message reads the same for every count.
    assert {key: text for key, text in messages("zh-CN").items() if "|" in text} == {}


def test_every_key_the_console_names_exists_and_every_key_is_used() -> None:
    en = messages("en")
    code = source()
    named = set(re.findall(r"\bt\(\s*'([\w.]+)'", code))
    assert sorted(named - set(en)) == [], "t('...') names keys that no locale file has"
    # A key is used when the code quotes it (in t('...') or a table of keys) or builds it
    # from a prefix (t(`alerts.phases.${phase}`)).
    quoted = set(re.findall(r"['\"](\w+(?:\.\w+)+)['\"]", code))
    prefixes = set(re.findall(r"\bt\(\s*`([\w.]+)\$\{", code))
    prefixes |= {f"{section}." for section in STATE_TAG_SECTIONS}
    unused = [k for k in en if k not in quoted and not any(k.startswith(p) for p in prefixes)]
    assert unused == [], "keys no code uses"
