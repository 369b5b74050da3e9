from word_counter import average_word_length, frequencies, top, words


def test_words_are_normalised():
    assert words("It's the 'END' of it") == ["it's", "the", "end", "of", "it"]


def test_frequencies_skip_stopwords():
    assert frequencies("the cat and the hat") == {"cat": 1, "hat": 1}


def test_frequencies_can_keep_stopwords():
    assert frequencies("the cat", skip_stopwords=False)["the"] == 1


def test_top_breaks_ties_alphabetically():
    assert top("b x c b x d") == [("b", 2), ("x", 2), ("c", 1)]


def test_top_n():
    assert top("x y z", n=2) == [("x", 1), ("y", 1)]


def test_average_word_length():
    assert average_word_length("ab abcd") == 3.0
    assert average_word_length("") == 0.0
