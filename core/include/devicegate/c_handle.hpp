#pragma once
// The one RAII pattern for C handles (OpenSSL, libcurl, hiredis): a unique_ptr whose deleter
// is the library's free function, of zero size.
//     using curl_ptr = std::unique_ptr<CURL, c_deleter<curl_easy_cleanup>>;
namespace devicegate {

template <auto Free>
struct c_deleter {
    template <class T>
    void operator()(T* p) const noexcept { Free(p); }
};

}  // namespace devicegate
