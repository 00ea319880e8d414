from statecore import statefile


def test_sample_file_comes_back_byte_for_byte(sample_state, sample_bytes):
    assert statefile.export_bytes() == sample_bytes
