"""Catalogue text read as written: every indicator's name and definition, in Spanish and English,
reaches the generated docs exactly as the catalogue's author typed it (open data: see
tests/test_opendata.py). YAML flow mappings cut plain text at a comma (``per 100,000`` read as
``per 100``), and a `` #`` starts a comment: the text read is compared with the source line itself,
not only with what the same YAML parser returns.
"""

import re
from pathlib import Path

import pytest

from obsx.indicators.catalogue import CATALOGUE, catalogue_markdown, load_catalogue
from obsx.sourceyaml import SourceError, load_yaml

LANGS = ("es", "en")


def _texts():
    """(code, key, lang, text as loaded, the source line it was written on)."""
    lines = CATALOGUE.read_text(encoding="utf-8").splitlines()
    raw = load_yaml(CATALOGUE)
    for entry in raw["indicators"]:
        for key in ("name", "definition"):
            mapping = entry[key]
            for lang in LANGS:
                yield entry["code"], key, lang, mapping[lang], lines[mapping.line(lang) - 1]


def _as_written(source_line: str, lang: str) -> tuple[str, str]:
    """The text after ``lang:`` on its line (unquoted) and what follows it on the line."""
    found = re.search(rf"(?:^\s*|[{{,]\s*){lang}:\s+(.*)$", source_line)
    assert found, source_line
    after = found.group(1)
    if after[:1] in ("'", '"'):
        quote = after[0]
        end = after.index(quote, 1)
        return after[1:end].replace(quote * 2, quote), after[end + 1 :]
    return after, ""


def test_every_name_and_definition_is_read_as_written():
    checked = 0
    for code, key, lang, text, source in _texts():
        written, rest = _as_written(source, lang)
        if rest:  # a quoted text: nothing but the end of the mapping may follow it
            assert rest.strip() in ("", "}", ",") or rest.lstrip().startswith(", en:"), source
            assert text == written, (code, key, lang)
        else:  # plain text: all of it, up to the end of the line or of its flow mapping
            assert written.startswith(text), (code, key, lang, text, source)
            tail = written[len(text) :].strip()
            assert tail in ("", "}") or (lang == "es" and tail.startswith(", en:")), (
                f"{code} {key}.{lang} reads {text!r} but the line goes on: {tail!r}"
            )
        checked += 1
    assert checked == 4 * len(load_catalogue().indicators)


def test_per_100_000_is_read_whole():
    cat = load_catalogue()
    for code, crime in [
        ("ROBBERY_RATE", "robbery"),
        ("THEFT_RATE", "theft"),
        ("EXTORTION_RATE", "extortion"),
        ("KIDNAPPING_RATE", "kidnapping"),
    ]:
        assert cat.indicator(code).name_en == f"Victims of {crime} per 100,000 population"
        assert cat.indicator(code).name_es.endswith("por 100.000 habitantes")


@pytest.mark.parametrize("lang", LANGS)
def test_generated_docs_carry_every_name_and_definition_unchanged(lang):
    cat = load_catalogue()
    generated = catalogue_markdown(cat, lang)
    committed = (
        Path(CATALOGUE).parent.parent
        / "docs"
        / ("indicators.md" if lang == "es" else "indicators.en.md")
    )
    assert committed.read_text(encoding="utf-8") == generated, "run: obsx catalogue-docs"
    for ind in cat.indicators:
        name = ind.name_es if lang == "es" else ind.name_en
        definition = ind.definition_es if lang == "es" else ind.definition_en
        assert f"\n**{name}**. {definition}" in generated, ind.code
        assert f"| [`{ind.code}`](#{ind.code.lower()}) {name} |" in generated, ind.code
        assert "|" not in name, f"{ind.code}: a '|' would split the docs' table cell"


def test_a_comma_in_a_flow_mapping_is_refused_with_its_line(tmp_path):
    text = CATALOGUE.read_text(encoding="utf-8")
    block = (
        "    name:\n      es: Víctimas de robo por 100.000 habitantes\n"
        "      en: Victims of robbery per 100,000 population\n"
    )
    flow = (
        "    name: {es: Víctimas de robo por 100.000 habitantes,"
        " en: Victims of robbery per 100,000 population}\n"
    )
    assert block in text
    broken = tmp_path / "catalogue.yaml"
    broken.write_text(text.replace(block, flow, 1), encoding="utf-8")
    line = text[: text.index(block)].count("\n") + 1
    with pytest.raises(
        SourceError, match=rf"catalogue.yaml:{line}: ROBBERY_RATE: name has '000 population'"
    ):
        load_catalogue(broken)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("      en: 100000\n", r"name.en is not text \(100000\)"),
        ("      fr: Victimes\n", r"name has 'fr' besides es and en"),
    ],
)
def test_a_name_that_is_not_two_texts_is_refused(tmp_path, written, message):
    text = CATALOGUE.read_text(encoding="utf-8")
    english = "      en: Victims of robbery per 100,000 population\n"
    broken = tmp_path / "catalogue.yaml"
    if written.strip().startswith("en:"):
        broken.write_text(text.replace(english, written, 1), encoding="utf-8")
    else:
        broken.write_text(text.replace(english, english + written, 1), encoding="utf-8")
    line = text[: text.index(english)].count("\n") + 1 + (0 if "en:" in written else 1)
    with pytest.raises(SourceError, match=rf"catalogue.yaml:{line}: ROBBERY_RATE: {message}"):
        load_catalogue(broken)
