from config import ClientConfig


def test_defaults():
    config = ClientConfig()
    assert (config.host, config.port, config.timeout_s) == ("localhost", 8080, 30.0)
    assert config.retries == 3


def test_from_dict_keeps_defaults():
    config = ClientConfig.from_dict({"port": 9000, "colour": "blue"})
    assert config.port == 9000
    assert config.retries == 3


def test_base_url():
    assert ClientConfig(host="example.org", port=80).base_url == "http://example.org:80"
