# Doxygen's input filter for the public headers (docs/man/Doxyfile.in): turns each section
# banner of a header into a Doxygen group, so that every section becomes one manual page in
# section 3 and each function in it a link to that page, as libtls groups its pages. The header
# stays the one source; nothing here is written twice.
#
# A banner is
#   /* ------------------------------------------------------------------------------------------
#    * Title: more words
#    *
#    * Description lines
#    * ---------------------------------------------------------------------------------------- */
# (or ending with a plain " */") and becomes "@defgroup tlsock_<title> Title: more words", its description, then "@{", closed
# before the next banner and at the end of the header. A header without banners (tlsock/uv.h) is
# one group named after the file, opened at its include guard.
#
# Run as: awk -f groups.awk HEADER (how Doxygen calls an input filter).

function slug(title,    s) {
    s = tolower(title)
    sub(/[:(].*/, "", s)
    gsub(/'/, "", s)
    gsub(/[^a-z0-9]+/, "_", s)
    sub(/^_/, "", s)
    sub(/_$/, "", s)
    return "tlsock_" s
}

function open_group(id, title, desc) {
    if (in_group) {
        print "/** @} */"
    }
    print "/** @defgroup " id " " title
    if (desc != "") {
        print desc
    }
    print " * @{ */"
    in_group = 1
}

BEGIN {
    while ((getline line < ARGV[1]) > 0) {
        if (line ~ /^\/\* -----+$/) {
            banners++
        }
    }
    close(ARGV[1])
}

banners == 0 && !in_group && /^#ifndef TLSOCK_[A-Z_]*_H$/ {
    print
    base = FILENAME
    sub(/.*\//, "", base)
    sub(/\.h$/, "", base)
    open_group("tlsock_" base, "tlsock/" base ".h: see the file's description", "")
    next
}
/^\/\* -----+$/ { in_banner = 1; title = ""; desc = ""; next }
in_banner && (/^ \* -----+ \*\/$/ || /^ \*\/$/) {
    in_banner = 0
    open_group(slug(title), title, desc)
    next
}
in_banner {
    line = $0
    sub(/^ \* ?/, "", line)
    if (title == "") {
        title = line
    } else {
        desc = desc (desc == "" ? "" : "\n") " * " line
    }
    next
}
{ print }
END {
    if (in_group) {
        print "/** @} */"
    }
}
