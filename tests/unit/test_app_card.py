from skysift.app.card import Card, StampPicture, card_html


def test_card_escapes_broker_text_and_carries_the_candid():
    html = card_html(Card(candid=42, heading="#1 of 2 · <script>x</script> · candid 42", light_curve_png=b"png",
                          light_curve_caption="curve", stamps=[StampPicture("science", b"s"),
                                                               StampPicture("template", None, "no template stamp")],
                          facts=[("SIMBAD", "<b>RGB*</b>")], mine="galactic"))
    assert 'data-candid="42"' in html and "<script>" not in html and "&lt;b&gt;RGB*" in html
    assert "your label: <b>galactic</b>" in html and "no template stamp" in html
    assert html.count('alt="science stamp') == 2  # the small stamp and the one it enlarges to
