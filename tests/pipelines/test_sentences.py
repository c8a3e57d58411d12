from pipelines.sentences import SentenceAggregator


def test_streamed_text_comes_out_as_sentences() -> None:
    agg = SentenceAggregator()
    out = []
    for piece in [
        "Hello there, ",
        "how are you? I am",
        " quite fine. Dr. Smith",
        " agrees.",
        " Ok",
    ]:
        out += agg.push(piece)
    assert out == ["Hello there, how are you?", "I am quite fine.", "Dr. Smith agrees."]
    assert agg.flush() == ["Ok"]


def test_short_pieces_wait_for_more() -> None:
    agg = SentenceAggregator()
    assert agg.push("Hi. ") == []
    assert agg.push("Nice to meet you. ") == ["Hi. Nice to meet you."]
