//! Connection wrappers that look only at what they read (the unix
//! socket's `:authority` fix, the TCP handshake deadline) pass writes and
//! tonic's connection info straight through to the stream they wrap; one
//! that looks only at what it writes (the HPACK setting) passes the
//! connection info.

/// Implements `AsyncWrite` and tonic's `Connected` for `$wrapper<S>` by
/// passing every call to its `inner` stream.
macro_rules! pass_writes_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }

        crate::io_wrap::pass_connect_info_through!($wrapper);
    };
}

/// Implements tonic's `Connected` for `$wrapper<S>` with its `inner`
/// stream's connection info.
macro_rules! pass_connect_info_through {
    ($wrapper:ident) => {
        impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
            for $wrapper<S>
        {
            type ConnectInfo = S::ConnectInfo;

            fn connect_info(&self) -> Self::ConnectInfo {
                self.inner.connect_info()
            }
        }
    };
}

pub(crate) use pass_connect_info_through;
pub(crate) use pass_writes_through;
