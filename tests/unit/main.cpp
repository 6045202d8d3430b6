// The one doctest binary of tests/unit (STYLE.md): every *_test.cpp under tests/unit links into it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
