"""Local accounts: passwords hashed, checked, and class lists imported all-or-nothing."""

import pytest

from hub.accounts import AccountError, Accounts, check_password, hash_password


@pytest.fixture
def accounts(tmp_path):
    return Accounts(f"sqlite:///{tmp_path / 'hub.sqlite'}", min_password_length=8)


def test_hash_is_salted_and_checks():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$")
    assert check_password("correct horse", a)
    assert not check_password("correct horsE", a)
    assert not check_password("x", "garbage")


def test_add_verify_and_refuse(accounts, tmp_path):
    accounts.add("kim", "s3cret-pass", full_name="김민수")
    assert accounts.verify("kim", "s3cret-pass").full_name == "김민수"
    assert accounts.verify("kim", "wrong-pass") is None
    assert accounts.verify("nobody", "s3cret-pass") is None
    raw = (tmp_path / "hub.sqlite").read_bytes()
    assert b"s3cret-pass" not in raw
    with pytest.raises(AccountError, match="exists already"):
        accounts.add("kim", "another-pass")
    with pytest.raises(AccountError, match="too short"):
        accounts.add("lee", "short")
    with pytest.raises(AccountError, match="bad username 'Kim Min'"):
        accounts.add("Kim Min", "long-enough")


def test_passwd_admin_remove(accounts):
    accounts.add("park", "first-pass")
    accounts.set_password("park", "second-pass")
    assert accounts.verify("park", "first-pass") is None
    assert accounts.verify("park", "second-pass") is not None
    accounts.set_admin("park", True)
    assert accounts.get("park").admin
    accounts.remove("park")
    assert accounts.get("park") is None
    with pytest.raises(AccountError, match="no user park"):
        accounts.remove("park")


def test_import_class_list_generates_passwords(accounts):
    generated = accounts.import_csv(
        "username,password,full_name,admin\n"
        "s2026001,,이서연,\n"
        "s2026002,given-password,Jane Doe,no\n"
        "teacher1,teach-pass,,yes\n"
    )
    assert [n for n, _ in generated] == ["s2026001"]
    name, pw = generated[0]
    assert accounts.verify(name, pw).full_name == "이서연"
    assert accounts.verify("s2026002", "given-password")
    assert accounts.get("teacher1").admin


@pytest.mark.parametrize("csv_text, message", [
    ("name,password\nkim,abcdefgh\n", "must be a header with a 'username' column"),
    ("username,pasword\nkim,abcdefgh\n", r"unknown column\(s\) \['pasword'\]"),
    ("username,password\nkim,abcdefgh\nlee,short\n", "line 3: password too short"),
    ("username\nkim\nKim Lee\n", "line 3: bad username"),
    ("username\nkim\nkim\n", "line 3: username kim appears twice"),
])
def test_bad_class_list_names_the_line_and_adds_nobody(accounts, csv_text, message):
    with pytest.raises(AccountError, match=message):
        accounts.import_csv(csv_text)
    assert accounts.all() == []
