# Compiler flags of the fuzz builds (docs/FUZZING.md). Included before src/ by the top-level
# CMakeLists.txt, because the library itself must be instrumented.
#   TLSOCK_BUILD_FUZZ=ON                         libFuzzer coverage feedback, AddressSanitizer and
#                                                UndefinedBehaviorSanitizer on everything
#   TLSOCK_BUILD_FUZZ=ON TLSOCK_FUZZ_COVERAGE=ON clang's source-based coverage instead, to measure
#                                                what a corpus reaches (no sanitizers, no libFuzzer)
if(NOT TLSOCK_BUILD_FUZZ)
  if(TLSOCK_FUZZ_COVERAGE)
    message(FATAL_ERROR "TLSOCK_FUZZ_COVERAGE needs TLSOCK_BUILD_FUZZ=ON")
  endif()
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TLSOCK_BUILD_FUZZ needs clang (libFuzzer): -DCMAKE_C_COMPILER=clang-14")
endif()
if(TLSOCK_SANITIZE)
  message(FATAL_ERROR "TLSOCK_BUILD_FUZZ brings its own sanitizers: leave TLSOCK_SANITIZE off")
endif()
if(TLSOCK_FUZZ_COVERAGE)
  add_compile_options(-fprofile-instr-generate -fcoverage-mapping)
  add_link_options(-fprofile-instr-generate)
else()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
