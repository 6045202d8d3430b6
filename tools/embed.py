"""Embeds a text file as a C++ std::string_view constant: embed.py INPUT OUTPUT NAMESPACE NAME."""
import sys

src, dst, namespace, name = sys.argv[1:5]
with open(src, encoding="utf-8") as f:
    text = f.read()
delim = "SIPR_EMBED"
assert ")" + delim + '"' not in text
with open(dst, "w", encoding="utf-8") as f:
    f.write("// Generated from %s by tools/embed.py. Do not edit.\n" % src.split("/")[-1])
    f.write("#pragma once\n#include <string_view>\n")
    f.write("namespace %s {\n" % namespace)
    f.write('inline constexpr std::string_view %s = R"%s(%s)%s";\n' % (name, delim, text, delim))
    f.write("}\n")
