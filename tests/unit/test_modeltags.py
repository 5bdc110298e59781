"""The taxonomy file: the packaged default reproduces the prototype's vocabulary, a team's file adds classes, and
a bad file stops start-up naming the line at fault."""

import textwrap

import pytest

from skysift import config, modeltags
from skysift.errors import ConfigError

# What modeltags.py held as constants before the vocabulary moved to taxonomy.yaml (commit 2f3171e): the packaged
# file must reproduce them exactly, or existing label events and registered models would change meaning.
OLD_LABELS = ("real", "extragalactic", "galactic", "agn", "bogus", "varstar", "skip")
OLD_LABEL_KEYS = {"real": "1", "extragalactic": "2", "galactic": "3", "agn": "4", "bogus": "5", "varstar": "6",
                  "skip": "0"}
OLD_TAGS = {  # name: (positive_class, negative_class, positive, negative, object_level)
    "galactic": ("galactic", "not_galactic", {"galactic", "varstar"}, {"extragalactic", "agn"}, True),
    "realbogus": ("real", "bogus", {"real", "extragalactic", "galactic", "agn", "varstar"}, {"bogus"}, False),
}

TEAM = textwrap.dedent("""\
    labels:
      - {name: agn, key: "1", colour: "#ef6c00", description: An active galactic nucleus.}
      - {name: cv, key: "2", colour: "#1565c0", description: A cataclysmic variable.}
      - {name: varstar, key: "3", colour: "#00838f", description: Another variable star.}
      - {name: snia, key: "4", colour: "#6a1b9a", description: A type Ia supernova.}
      - {name: snii, key: "5", colour: "#2e7d32", description: A type II supernova.}
      - {name: bogus, key: "9", colour: "#c62828", description: An artefact.}
      - {name: skip, key: "0", colour: "#757575", description: Not sure.}
    tags:
      - name: classes
        kind: multiclass
        object_level: true
        classes: [agn, cv, varstar, snia, snii]
        hierarchy:
          Persistent: [Stellar, agn]
          Stellar: [cv, varstar]
          Transient: [snia, snii]
      - name: realbogus
        kind: binary
        positive_class: real
        negative_class: bogus
        positive: [agn, cv, varstar, snia, snii]
        negative: [bogus]
    default_tag: classes
    """)


def test_packaged_file_reproduces_the_old_vocabulary_and_tags():
    vocab = modeltags.read(modeltags.DEFAULT_TAXONOMY_FILE)
    assert vocab.label_names == OLD_LABELS
    assert vocab.keys == OLD_LABEL_KEYS
    assert vocab.default_tag == "galactic"
    assert set(vocab.tags) == set(OLD_TAGS)
    for name, (pos_class, neg_class, positive, negative, object_level) in OLD_TAGS.items():
        tag = vocab.tags[name]
        assert (tag.classes, tag.positive, tag.negative) == ((neg_class, pos_class), positive, negative)
        assert tag.object_level is object_level and not tag.multiclass
        assert [tag.target(lab) for lab in OLD_LABELS] == [
            1 if lab in positive else 0 if lab in negative else None for lab in OLD_LABELS]


def test_the_setting_names_the_file_every_module_reads(tmp_path, monkeypatch):
    path = tmp_path / "team.yaml"
    path.write_text(TEAM)
    monkeypatch.setenv("SKYSIFT_TAXONOMY_FILE", str(path))
    modeltags.vocabulary.cache_clear()
    try:
        assert config.load(config.Settings).taxonomy_file == path
        assert modeltags.labels() == ("agn", "cv", "varstar", "snia", "snii", "bogus", "skip")
        assert modeltags.default_tag() == "classes"
        with pytest.raises(Exception, match="unknown label 'galactic'"):
            modeltags.check_label("galactic")
    finally:
        modeltags.vocabulary.cache_clear()


def test_multiclass_tag_has_one_class_per_label_and_its_hierarchy():
    tag = modeltags.parse(TEAM).tags["classes"]
    assert tag.multiclass and tag.object_level
    assert tag.classes == ("agn", "cv", "varstar", "snia", "snii")
    assert [tag.target(lab) for lab in ("snii", "agn", "bogus")] == [4, 0, None]
    assert tag.hierarchy() == {"Persistent": {"Stellar": {"cv": {}, "varstar": {}}, "agn": {}},
                               "Transient": {"snia": {}, "snii": {}}}


def test_a_flat_multiclass_tag_has_its_classes_at_the_top():
    text = TEAM.replace("    hierarchy:\n      Persistent: [Stellar, agn]\n      Stellar: [cv, varstar]\n"
                        "      Transient: [snia, snii]\n", "")
    assert modeltags.parse(text).tags["classes"].hierarchy() == {c: {} for c in ("agn", "cv", "varstar", "snia", "snii")}


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[occurrence - 1]


@pytest.mark.parametrize("change, needle, occurrence, why", [
    (("classes: [agn, cv, varstar, snia, snii]", "classes: [agn, cv, varstar, snia, tde]"),
     "classes: [agn", 1, "unknown label 'tde'"),
    (("positive: [agn, cv, varstar, snia, snii]", "positive: [agn, cv, varstar, snia, snii, bogus]"),
     "positive: [agn", 1, "'bogus' is both positive and negative"),
    (('{name: snii, key: "5"', '{name: snii, key: "4"'), "name: snii", 1, "key '4' is already 'snia'"),
    (('{name: snii, key: "5"', '{name: snia, key: "5"'), "name: snia", 2, "label 'snia' is defined twice"),
    (("Transient: [snia, snii]", "Transient: [snia, snii, agn]"), "Transient:", 1,
     "'agn' is in two groups, 'Persistent' and 'Transient'"),
    (("Stellar: [cv, varstar]", "Stellar: [cv, varstar, Persistent]"), "Persistent: [Stellar", 1,
     "cycle: Persistent → Stellar → Persistent"),
    (("Transient: [snia, snii]", "Transient: [snia, snii, kilonova]"), "Transient:", 1,
     "'kilonova' in group 'Transient' is neither a class nor a group"),
    (("default_tag: classes", "default_tag: sntype"), "default_tag", 1, "default_tag 'sntype' is not a tag"),
    (('  - {name: skip, key: "0", colour: "#757575", description: Not sure.}\n', ""), "labels:", 1,
     "the labels need 'skip'"),
    (("negative: [bogus]", "negative: [bogus, skip]"), "negative: [bogus", 1, "'skip' cannot train a class"),
    (("kind: multiclass", "kind: multi"), "kind: multi", 1, "tags.0.kind"),
    (('colour: "#1565c0"', 'colour: blue'), "name: cv", 1, "labels.1.colour"),
    (("  - name: realbogus", "  - name: classes"), "name: classes", 2, "tag 'classes' is defined twice"),
    (("    object_level: true\n", "    object_level: true\n    object_level: false\n"),
     "object_level: false", 1, "'object_level' is given twice"),
])
def test_a_bad_file_names_the_line_at_fault(change, needle, occurrence, why):
    text = TEAM.replace(*change)
    assert text != TEAM
    with pytest.raises(ConfigError) as err:
        modeltags.parse(text, "team.yaml")
    assert why in str(err.value)
    assert f"team.yaml line {_line_of(text, needle, occurrence)}:" in str(err.value)


def test_unreadable_or_malformed_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the taxonomy file .*SKYSIFT_TAXONOMY_FILE"):
        modeltags.read(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"line 3: not valid YAML"):
        modeltags.parse("labels:\n  - name: a\n  key: [unclosed\n")


def test_a_bad_file_stops_a_service_at_start_up(tmp_path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(TEAM.replace("classes: [agn, cv, varstar, snia, snii]", "classes: [agn, cv, varstar, snia, tde]"))
    env = {**os.environ, "SKYSIFT_TAXONOMY_FILE": str(bad), "SKYSIFT_STORE_URL": str(tmp_path / "store"),
           "SKYSIFT_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    done = subprocess.run([sys.executable, "-m", "skysift.cli", "serve", "trainer", "--port", "0", "--metrics-port", "0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"bad.yaml line {_line_of(bad.read_text(), 'classes: [agn')}: unknown label 'tde'" in done.stderr
