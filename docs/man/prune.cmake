# Keeps only pages named after tlsock's own identifiers (tlsock_*, TLSOCK_*) and the headers'
# pages: Doxygen also links each struct member (read, len, size...) and the include directory,
# names that are not ours to install in section 3.
file(GLOB pages "${MAN3}/*.3")
foreach(page ${pages})
  get_filename_component(name ${page} NAME)
  if(NOT name MATCHES "^(tlsock|TLSOCK)")
    file(REMOVE ${page})
  endif()
endforeach()
